// The engine behind `nanoflow serve`: the backend, the step loop, and the thread that runs it.
#include "engine_factory.h"

#include "engine/engine_thread.h"

namespace nf::cli {

std::unique_ptr<engine_service> make_engine_service(const model_options& model, const engine_cli_options& engine) {
  std::unique_ptr<backend> device = load_backend(model);
  const engine_options options = engine.make(*device);
  return std::make_unique<engine_thread>(std::make_unique<llm_engine>(std::move(device), options));
}

}  // namespace nf::cli
