// `nanoflow generate`: one prompt in, one completion out, as text on a terminal or as one JSON object.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "commands.h"
#include "core/error.h"
#include "core/sampling_params.h"
#include "engine/generate.h"
#include "model_loading.h"
#include "tokenizer/detokenizer.h"

namespace nf::cli {
namespace {

struct generate_options {
  model_options model;
  std::string prompt;
  std::string prompt_token_ids;
  sampling_params sampling;
  uint64_t seed = 0;
  bool json_output = false;
  int prefill_chunk = 0;
};

std::vector<int32_t> parse_token_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      fail("--prompt-token-ids: '{}' is not an integer", item);
    }
    if (used != item.size() || value < 0 || value > INT32_MAX) fail("--prompt-token-ids: '{}' is not a token id", item);
    ids.push_back(static_cast<int32_t>(value));
  }
  return ids;
}

// Streams text as it is generated, and finds stop strings in it.
class text_output {
 public:
  text_output(const tokenizer* tok, const sampling_params& params, bool print)
      : params_(params), print_(print) {
    if (tok) detokenizer_ = std::make_unique<detokenizer>(*tok, true);
  }

  // Adds a token; returns true when a stop string has appeared (the text is cut before it).
  bool add(int32_t token) {
    if (!detokenizer_) return false;
    text_ += detokenizer_->add(token);
    return find_stop() || (emit(), false);
  }
  void finish(bool stopped) {
    if (!detokenizer_) return;
    if (!stopped) {
      text_ += detokenizer_->finish();
      find_stop();
    }
    emit_all();
  }
  const std::string& text() const { return text_; }
  bool has_text() const { return detokenizer_ != nullptr; }

 private:
  bool find_stop() {
    size_t cut = std::string::npos;
    for (const auto& stop : params_.stop) cut = std::min(cut, text_.find(stop));
    if (cut == std::string::npos) return false;
    text_.resize(cut);
    return true;
  }
  // Prints what can no longer become part of a stop string.
  void emit() {
    size_t hold = 0;
    for (const auto& stop : params_.stop) hold = std::max(hold, stop.size() - 1);
    const size_t safe = text_.size() > hold ? text_.size() - hold : 0;
    if (print_ && safe > printed_) {
      std::fwrite(text_.data() + printed_, 1, safe - printed_, stdout);
      std::fflush(stdout);
      printed_ = safe;
    }
  }
  void emit_all() {
    if (print_ && text_.size() > printed_) std::fwrite(text_.data() + printed_, 1, text_.size() - printed_, stdout);
    if (print_) {
      std::fputc('\n', stdout);
      std::fflush(stdout);
    }
    printed_ = text_.size();
  }

  const sampling_params& params_;
  bool print_;
  std::unique_ptr<detokenizer> detokenizer_;
  std::string text_;
  size_t printed_ = 0;
};

int run_generate(generate_options& options) {
  if (options.prompt.empty() == options.prompt_token_ids.empty())
    fail("give exactly one of --prompt and --prompt-token-ids");
  options.sampling.validate();
  std::unique_ptr<tokenizer> tok = load_tokenizer_if_present(options.model);
  std::vector<int32_t> prompt_ids;
  if (!options.prompt.empty()) {
    if (!tok) fail("--prompt needs a tokenizer (tokenizer.json or tokenizer.model) in {}", options.model.model_dir);
    prompt_ids = tok->encode(options.prompt, true);
  } else {
    prompt_ids = parse_token_ids(options.prompt_token_ids);
  }
  std::unique_ptr<backend> model = load_backend(options.model);
  validate_prompt(model->config(), prompt_ids);
  const uint64_t seed = options.sampling.seed.value_or(std::random_device{}() | (uint64_t{std::random_device{}()} << 32));

  text_output output(tok.get(), options.sampling, !options.json_output);
  const auto start = std::chrono::steady_clock::now();
  const generation_result result = generate_one(
      *model, prompt_ids, options.sampling, seed, [&](int32_t token) { return output.add(token); },
      options.prefill_chunk);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  output.finish(result.finish_reason == "stop");

  if (options.json_output) {
    nlohmann::json json = {{"prompt_token_ids", prompt_ids}, {"token_ids", result.token_ids},
                           {"finish_reason", result.finish_reason}, {"num_prompt_tokens", prompt_ids.size()},
                           {"num_generated_tokens", result.token_ids.size()}, {"elapsed_s", seconds},
                           {"seed", seed}};
    json["text"] = output.has_text() ? nlohmann::json(output.text()) : nlohmann::json(nullptr);
    if (options.sampling.logprobs >= 0) {
      nlohmann::json logprobs = nlohmann::json::array();
      for (const sample_result& sample : result.samples) {
        nlohmann::json top = nlohmann::json::array();
        for (const token_logprob& alt : sample.top_logprobs) top.push_back({{"token_id", alt.token_id}, {"logprob", alt.logprob}});
        logprobs.push_back({{"token_id", sample.token_id}, {"logprob", sample.logprob}, {"top_logprobs", top}});
      }
      json["logprobs"] = logprobs;
    }
    std::printf("%s\n", json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (!output.has_text()) {
    for (size_t i = 0; i < result.token_ids.size(); ++i) std::printf("%s%d", i ? "," : "", result.token_ids[i]);
    std::printf("\n");
  }
  std::fprintf(stderr, "%zu prompt tokens, %zu generated (%s) in %.3f s: %.1f tokens/s\n", prompt_ids.size(),
               result.token_ids.size(), result.finish_reason.c_str(), seconds,
               result.token_ids.size() / std::max(seconds, 1e-9));
  return 0;
}

}  // namespace

command_action add_generate_command(CLI::App& app) {
  auto options = std::make_shared<generate_options>();
  CLI::App* command = app.add_subcommand("generate", "Generate a completion of one prompt");
  options->model.add_to(*command);
  sampling_params& s = options->sampling;
  command->add_option("--prompt", options->prompt, "prompt text (tokenized with the model's tokenizer)");
  command->add_option("--prompt-token-ids", options->prompt_token_ids, "prompt as comma-separated token ids");
  command->add_option("--max-tokens", s.max_tokens, "tokens to generate at most")->check(CLI::PositiveNumber);
  command->add_option("--min-tokens", s.min_tokens, "tokens to generate before EOS may end the output");
  command->add_option("--temperature", s.temperature, "0 for greedy");
  command->add_option("--top-p", s.top_p, "nucleus sampling mass");
  command->add_option("--top-k", s.top_k, "sample among the k most likely tokens (0: all)");
  command->add_option("--min-p", s.min_p, "drop tokens less likely than min_p times the most likely");
  command->add_option("--repetition-penalty", s.repetition_penalty, "penalty on tokens already seen (1: off)");
  command->add_option("--presence-penalty", s.presence_penalty, "penalty on tokens already generated");
  command->add_option("--frequency-penalty", s.frequency_penalty, "penalty per occurrence in the output");
  command->add_option_function<uint64_t>("--seed", [&s](uint64_t seed) { s.seed = seed; }, "sampling seed");
  command->add_flag("--ignore-eos", s.ignore_eos, "keep generating past EOS");
  command->add_option("--stop", s.stop, "stop string (repeatable)");
  command->add_option("--stop-token-ids", s.stop_token_ids, "token ids that end the output")->delimiter(',');
  command->add_option("--logprobs", s.logprobs, "return logprobs with this many alternatives (JSON output)");
  command->add_option("--prefill-chunk", options->prefill_chunk, "prefill the prompt in chunks of this many tokens");
  command->add_flag("--json", options->json_output, "print one JSON object");
  s.temperature = 0.0f;
  return [options] { return run_generate(*options); };
}

}  // namespace nf::cli
