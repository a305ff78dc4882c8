// The CUDA executor of pipeline specs: runs a stream_schedule (pipeline/stream_schedule.h) on CUDA streams.
// Lane 0 is the caller's stream; the other lanes fork from it at the start of the layers and join it at the
// end. Each lane has its own cuBLASLt runner (its own workspace, so concurrent GEMMs never share one), and a
// nano-op that others wait for records an event after it. The nano-ops themselves are launched by a callback,
// so the same executor runs the sequential, nano-batch and overlapped specs.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "pipeline/stream_schedule.h"

namespace nf::cuda {

struct stream_lane {
  int index = 0;
  cudaStream_t stream = nullptr;
  kernels::gemm_runner* gemm = nullptr;
};

class stream_executor {
 public:
  // high_priority[i]: lane i > 0 is created with the device's greatest stream priority, so the block scheduler
  // places its blocks first when SMs free up (memory-bound lanes beside long GEMMs). Every lane the spec names
  // (its streams, cuBLASLt runners and workspaces) and `max_nodes` node events are created here, so that a step
  // captured into a CUDA graph never allocates: allocation is not permitted while a stream is capturing.
  stream_executor(cudaStream_t main_stream, std::vector<bool> high_priority, size_t max_nodes);
  ~stream_executor();
  stream_executor(const stream_executor&) = delete;
  stream_executor& operator=(const stream_executor&) = delete;

  // The lane of the caller's stream (embedding, LM head and sampling run there).
  stream_lane main_lane() { return lane(0); }
  // Launches every node of `schedule` (node = layer * num_nano_ops + nano_op) on its stream through `launch`,
  // with the waits the schedule asks for. Returns when everything is enqueued; the work is ordered before
  // anything enqueued on the main stream afterwards.
  void run(const stream_schedule& schedule, const std::function<void(int node, const stream_lane&)>& launch);

 private:
  stream_lane lane(int index);
  void ensure_lanes(int num_lanes);
  void ensure_node_events(size_t num_nodes);

  std::vector<bool> high_priority_;                           // [lanes the spec names]
  std::vector<cudaStream_t> streams_;                         // [num_lanes]; [0] is the caller's
  std::vector<std::unique_ptr<kernels::gemm_runner>> gemms_;  // [num_lanes]
  std::vector<cudaEvent_t> lane_events_;                      // [num_lanes]: fork (lane 0) and join points
  std::vector<cudaEvent_t> node_events_;                      // [num_nodes]: recorded after a waited-for node
};

}  // namespace nf::cuda
