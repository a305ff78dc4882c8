// Unicode normalization through ICU's Normalizer2.
#include "tokenizer/unicode_normalize.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include "core/error.h"

namespace nf {

std::string unicode_normalize(std::string_view text, unicode_form form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  switch (form) {
    case unicode_form::nfc: normalizer = icu::Normalizer2::getNFCInstance(status); break;
    case unicode_form::nfd: normalizer = icu::Normalizer2::getNFDInstance(status); break;
    case unicode_form::nfkc: normalizer = icu::Normalizer2::getNFKCInstance(status); break;
    case unicode_form::nfkd: normalizer = icu::Normalizer2::getNFKDInstance(status); break;
  }
  NF_CHECK(U_SUCCESS(status) && normalizer != nullptr, "ICU normalizer unavailable: {}", u_errorName(status));
  const icu::UnicodeString source =
      icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (normalizer->isNormalized(source, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString result = normalizer->normalize(source, status);
  NF_CHECK(U_SUCCESS(status), "ICU normalization failed: {}", u_errorName(status));
  std::string out;
  result.toUTF8String(out);
  return out;
}

}  // namespace nf
