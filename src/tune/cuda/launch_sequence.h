// Timing device work without host launch overhead: a fixed sequence of launches captured once into a CUDA graph
// and replayed, timed with events; and two such sequences replayed at once on two streams (interference).
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <vector>

namespace nf::cuda {

// Enqueues launch number `index` (0-based) on `stream`; throws nf::error on a CUDA error.
using launch_fn = std::function<void(int index, cudaStream_t stream)>;

// `num_launches` launches, captured into one graph on `capture_stream` (which must not be the legacy default
// stream). When capturing fails (a kernel or library call that cannot be captured), the sequence launches
// directly instead; its timings then include the host's launch overhead, and captured() says so.
class launch_sequence {
 public:
  launch_sequence(cudaStream_t capture_stream, int num_launches, launch_fn launch);
  ~launch_sequence();
  launch_sequence(const launch_sequence&) = delete;
  launch_sequence& operator=(const launch_sequence&) = delete;

  void enqueue(cudaStream_t stream) const;
  int num_launches() const { return num_launches_; }
  bool captured() const { return exec_ != nullptr; }

 private:
  int num_launches_ = 0;
  launch_fn launch_;
  cudaGraphExec_t exec_ = nullptr;
};

// Events of one timing run, created once and reused.
class event_pool {
 public:
  explicit event_pool(int count);
  ~event_pool();
  event_pool(const event_pool&) = delete;
  event_pool& operator=(const event_pool&) = delete;
  cudaEvent_t operator[](int i) const { return events_[i]; }

 private:
  std::vector<cudaEvent_t> events_;
};

// Microseconds from event `from` to event `to` (both completed).
double elapsed_us(cudaEvent_t from, cudaEvent_t to);

// The median over `num_replays` replays (after one untimed warm-up replay) of the whole sequence's time on
// `stream`, in microseconds.
double time_sequence_us(const launch_sequence& sequence, cudaStream_t stream, int num_replays);

// One run of two sequences at once, `a` on stream_a and `b` on stream_b, both released by one event: each one's
// start and end in microseconds after the release.
struct concurrent_run {
  double a_start_us = 0.0, a_end_us = 0.0;
  double b_start_us = 0.0, b_end_us = 0.0;
};
concurrent_run run_concurrently(const launch_sequence& a, cudaStream_t stream_a, const launch_sequence& b,
                                cudaStream_t stream_b);

// The slowdown of one side of a concurrent run: it did `alone_us` of work (its time alone) in [start, end],
// sharing the GPU during `overlap_us` of that and alone for the rest. Outside the overlap it runs at its alone
// speed, so inside it ran `slowdown` times slower: overlap / slowdown + (end - start - overlap) = alone.
// Falls back to the whole interval's ratio when the overlap is too short to tell.
double slowdown_of(double alone_us, double start_us, double end_us, double overlap_us);

}  // namespace nf::cuda
