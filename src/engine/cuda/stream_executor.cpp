// Stream executor: fork, the schedule's launches and waits, join.
#include "engine/cuda/stream_executor.h"

#include <algorithm>
#include <utility>

#include "engine/cuda/device_memory.h"

namespace nf::cuda {

namespace {

cudaEvent_t make_event() {
  cudaEvent_t event = nullptr;
  NF_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

}  // namespace

stream_executor::stream_executor(cudaStream_t main_stream, std::vector<bool> high_priority, size_t max_nodes)
    : high_priority_(std::move(high_priority)) {
  streams_.push_back(main_stream);
  gemms_.push_back(std::make_unique<kernels::gemm_runner>());
  NF_CUDA_CHECK(gemms_.back()->init());
  lane_events_.push_back(make_event());
  ensure_lanes(static_cast<int>(high_priority_.size()));
  ensure_node_events(max_nodes);
}

stream_executor::~stream_executor() {
  for (size_t i = 1; i < streams_.size(); ++i) cudaStreamDestroy(streams_[i]);
  for (cudaEvent_t e : lane_events_) cudaEventDestroy(e);
  for (cudaEvent_t e : node_events_) cudaEventDestroy(e);
}

stream_lane stream_executor::lane(int index) { return {index, streams_[index], gemms_[index].get()}; }

void stream_executor::ensure_lanes(int num_lanes) {
  while (static_cast<int>(streams_.size()) < num_lanes) {
    cudaStream_t stream = nullptr;
    int least = 0, greatest = 0;
    NF_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    const size_t index = streams_.size();
    const bool high = index < high_priority_.size() && high_priority_[index];
    NF_CUDA_CHECK(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, high ? greatest : least));
    streams_.push_back(stream);
    gemms_.push_back(std::make_unique<kernels::gemm_runner>());
    NF_CUDA_CHECK(gemms_.back()->init());
    lane_events_.push_back(make_event());
  }
}

void stream_executor::ensure_node_events(size_t num_nodes) {
  while (node_events_.size() < num_nodes) node_events_.push_back(make_event());
}

void stream_executor::run(const stream_schedule& schedule, const std::function<void(int, const stream_lane&)>& launch) {
  const int num_lanes = std::max(1, schedule.num_streams);
  ensure_lanes(num_lanes);
  ensure_node_events(schedule.order.size());
  if (num_lanes > 1) {
    NF_CUDA_CHECK(cudaEventRecord(lane_events_[0], streams_[0]));
    for (int i = 1; i < num_lanes; ++i) NF_CUDA_CHECK(cudaStreamWaitEvent(streams_[i], lane_events_[0], 0));
  }
  for (int node : schedule.order) {
    const int index = schedule.stream_of[node];
    cudaStream_t stream = streams_[index];
    for (int waited : schedule.waits[node]) NF_CUDA_CHECK(cudaStreamWaitEvent(stream, node_events_[waited], 0));
    launch(node, lane(index));
    if (schedule.records_event[node]) NF_CUDA_CHECK(cudaEventRecord(node_events_[node], stream));
  }
  for (int i = 1; i < num_lanes; ++i) {
    NF_CUDA_CHECK(cudaEventRecord(lane_events_[i], streams_[i]));
    NF_CUDA_CHECK(cudaStreamWaitEvent(streams_[0], lane_events_[i], 0));
  }
}

}  // namespace nf::cuda
