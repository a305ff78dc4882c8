// Placeholder until the batching engine lands: it replaces this body with the construction of its
// engine_service from `options`.
#include "engine_factory.h"

#include "core/error.h"

namespace nf::cli {

std::unique_ptr<engine_service> make_engine_service(const model_options& options) {
  fail("serve needs the engine (not built yet); model {} was not loaded", options.model_dir);
}

}  // namespace nf::cli
