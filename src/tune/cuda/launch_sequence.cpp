// Launch sequences: graph capture with a direct-launch fallback, replays timed with events, concurrent runs.
#include "tune/cuda/launch_sequence.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "engine/cuda/device_memory.h"

namespace nf::cuda {

launch_sequence::launch_sequence(cudaStream_t capture_stream, int num_launches, launch_fn launch)
    : num_launches_(num_launches), launch_(std::move(launch)) {
  NF_CHECK(num_launches > 0, "a launch sequence needs at least one launch");
  NF_CUDA_CHECK(cudaStreamSynchronize(capture_stream));
  if (cudaStreamBeginCapture(capture_stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  bool launched = true;
  try {
    for (int i = 0; i < num_launches_; ++i) launch_(i, capture_stream);
  } catch (const error&) {
    launched = false;  // the capture is ended below; a real error shows again on the direct launches
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(capture_stream, &graph);
  if (launched && ended == cudaSuccess && graph != nullptr) {
    if (cudaGraphInstantiate(&exec_, graph, 0) != cudaSuccess) exec_ = nullptr;
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (exec_ == nullptr) (void)cudaGetLastError();  // capture errors are not sticky; clear them for the fallback
}

launch_sequence::~launch_sequence() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
}

void launch_sequence::enqueue(cudaStream_t stream) const {
  if (exec_ != nullptr) {
    NF_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
    return;
  }
  for (int i = 0; i < num_launches_; ++i) launch_(i, stream);
}

event_pool::event_pool(int count) {
  for (int i = 0; i < count; ++i) {
    cudaEvent_t event = nullptr;
    NF_CUDA_CHECK(cudaEventCreate(&event));
    events_.push_back(event);
  }
}

event_pool::~event_pool() {
  for (cudaEvent_t event : events_) cudaEventDestroy(event);
}

double elapsed_us(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0.0f;
  NF_CUDA_CHECK(cudaEventElapsedTime(&ms, from, to));
  return 1e3 * static_cast<double>(ms);
}

double time_sequence_us(const launch_sequence& sequence, cudaStream_t stream, int num_replays) {
  const event_pool events(2);
  sequence.enqueue(stream);
  std::vector<double> times;  // [num_replays]
  for (int r = 0; r < std::max(1, num_replays); ++r) {
    NF_CUDA_CHECK(cudaEventRecord(events[0], stream));
    sequence.enqueue(stream);
    NF_CUDA_CHECK(cudaEventRecord(events[1], stream));
    NF_CUDA_CHECK(cudaEventSynchronize(events[1]));
    times.push_back(elapsed_us(events[0], events[1]));
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

concurrent_run run_concurrently(const launch_sequence& a, cudaStream_t stream_a, const launch_sequence& b,
                                cudaStream_t stream_b) {
  const event_pool events(5);  // release, a start, a end, b start, b end
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_a));
  NF_CUDA_CHECK(cudaStreamSynchronize(stream_b));
  NF_CUDA_CHECK(cudaEventRecord(events[0], stream_a));
  NF_CUDA_CHECK(cudaStreamWaitEvent(stream_b, events[0], 0));
  NF_CUDA_CHECK(cudaEventRecord(events[1], stream_a));
  NF_CUDA_CHECK(cudaEventRecord(events[3], stream_b));
  a.enqueue(stream_a);
  b.enqueue(stream_b);
  NF_CUDA_CHECK(cudaEventRecord(events[2], stream_a));
  NF_CUDA_CHECK(cudaEventRecord(events[4], stream_b));
  NF_CUDA_CHECK(cudaEventSynchronize(events[2]));
  NF_CUDA_CHECK(cudaEventSynchronize(events[4]));
  return {elapsed_us(events[0], events[1]), elapsed_us(events[0], events[2]), elapsed_us(events[0], events[3]),
          elapsed_us(events[0], events[4])};
}

double slowdown_of(double alone_us, double start_us, double end_us, double overlap_us) {
  const double span = std::max(end_us - start_us, 1e-9);
  const double shared_work = alone_us - (span - overlap_us);  // alone-time of the work done during the overlap
  if (overlap_us >= 0.25 * span && shared_work > 0.05 * overlap_us) return overlap_us / shared_work;
  return span / std::max(alone_us, 1e-9);
}

}  // namespace nf::cuda
