// The engine behind `nanoflow serve`: one function, so the server command does not depend on how the
// engine is built.
#pragma once

#include <memory>

#include "engine/engine_service.h"
#include "model_loading.h"

namespace nf::cli {

// Loads the model and starts the engine's step loop. nf::error when it cannot.
std::unique_ptr<engine_service> make_engine_service(const model_options& model, const engine_cli_options& engine);

}  // namespace nf::cli
