// A deterministic stand-in for the model and backend, for scheduler tests.
//
// fake_model: the next token is a hash of the whole sequence so far, modulo a small vocabulary (so EOS,
// token 0 by default, comes up now and then). reference_generate() applies it to a prompt alone, with
// the stop rules of sampling_params written out independently of the scheduler.
//
// fake_backend: executes step plans like a device would. It stores the token id of every KV slot in a
// paged array indexed through the plan's block tables, reads each sequence back from those pages to
// compute its next token, substitutes placeholder tokens from its own previous output, and checks that a
// step writes only into blocks its request alone holds. A wrong block table, a wrongly reused prefix
// block or a freed block reused too early changes the tokens, which the tests compare with references.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/sampling_params.h"
#include "sched/scheduler.h"
#include "sched/step_plan.h"

namespace nf::test {

struct fake_model {
  int vocab = 64;

  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  }

  int32_t next(const std::vector<int32_t>& sequence) const {
    uint64_t h = 0x1234567ull;
    for (int32_t t : sequence) h = mix(h ^ static_cast<uint32_t>(t)) + 0x9e37ull;
    return static_cast<int32_t>(mix(h + sequence.size()) % static_cast<uint64_t>(vocab));
  }
};

// The tokens `prompt` produces alone under `params`, stopping as the OpenAI/vLLM semantics say:
// EOS (unless ignore_eos) and stop_token_ids stop once min_tokens are out; max_tokens stops by length.
inline std::vector<int32_t> reference_generate(const fake_model& model, std::vector<int32_t> sequence,
                                               const sampling_params& params, const std::vector<int32_t>& eos_ids) {
  std::vector<int32_t> out;
  for (;;) {
    int32_t t = model.next(sequence);
    sequence.push_back(t);
    out.push_back(t);
    bool counts = static_cast<int>(out.size()) >= params.min_tokens;
    bool is_eos = std::find(eos_ids.begin(), eos_ids.end(), t) != eos_ids.end();
    bool is_stop = std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), t) !=
                   params.stop_token_ids.end();
    if (counts && ((is_eos && !params.ignore_eos) || is_stop)) return out;
    if (static_cast<int>(out.size()) >= params.max_tokens) return out;
  }
}

class fake_backend {
 public:
  fake_backend(const scheduler& sched, fake_model model)
      : sched_(sched), model_(model), block_size_(sched.kv().block_size()),
        slots_(static_cast<size_t>(sched.kv().num_blocks()) * static_cast<size_t>(block_size_), -1) {}

  // Runs one step and returns one sampled token per entry with needs_logits.
  std::vector<int32_t> run(const step_plan& plan) {
    for (request_id id : plan.finished_ids) last_sampled_.erase(id);
    for (request_id id : plan.preempted_ids) last_sampled_.erase(id);
    std::vector<int32_t> sampled;
    for (const scheduled_request& e : plan.requests) {
      const int end = e.position + e.num_tokens();
      EXPECT_EQ(static_cast<int>(e.block_table.size()), (end + block_size_ - 1) / block_size_) << "request " << e.id;
      for (int i = 0; i < e.num_tokens(); ++i) {
        int32_t t = e.token_ids[static_cast<size_t>(i)];
        if (t == placeholder_token) {
          auto it = last_sampled_.find(e.id);
          EXPECT_TRUE(it != last_sampled_.end()) << "placeholder without a previous token, request " << e.id;
          t = it == last_sampled_.end() ? 0 : it->second;
        }
        block_id b = e.block_table[static_cast<size_t>((e.position + i) / block_size_)];
        EXPECT_EQ(sched_.kv().pool().ref_count(b), 1) << "request " << e.id << " writes shared or free block " << b;
        slot(e, e.position + i) = t;
      }
      if (!e.needs_logits) continue;
      std::vector<int32_t> sequence(static_cast<size_t>(end));
      for (int p = 0; p < end; ++p) sequence[static_cast<size_t>(p)] = slot(e, p);
      int32_t t = model_.next(sequence);
      last_sampled_[e.id] = t;
      sampled.push_back(t);
    }
    return sampled;
  }

 private:
  int32_t& slot(const scheduled_request& e, int position) {
    block_id b = e.block_table[static_cast<size_t>(position / block_size_)];
    return slots_[static_cast<size_t>(b) * static_cast<size_t>(block_size_) + static_cast<size_t>(position % block_size_)];
  }

  const scheduler& sched_;
  fake_model model_;
  int block_size_;
  std::vector<int32_t> slots_;  // [num_blocks, block_size] token id whose KV each slot holds
  std::unordered_map<request_id, int32_t> last_sampled_;
};

}  // namespace nf::test
