// Unicode normalization forms (through ICU) for the NFC/NFD/NFKC/NFKD normalizers of tokenizer.json.
#pragma once

#include <string>
#include <string_view>

namespace nf {

enum class unicode_form { nfc, nfd, nfkc, nfkd };

// text must be valid UTF-8.
std::string unicode_normalize(std::string_view text, unicode_form form);

}  // namespace nf
