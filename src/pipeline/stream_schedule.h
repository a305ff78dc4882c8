// How a device executor issues one step of a resolved pipeline on its streams: the order in which nano-ops are
// enqueued (a topological order of the unrolled graph, so every event a wait refers to is recorded first), and
// for each nano-op the events it must wait for on other streams. Within a stream the stream's own order
// serialises work; across streams only the latest needed predecessor on each other stream is waited for,
// and a wait that an earlier wait of the same stream already covers is dropped.
#pragma once

#include <vector>

#include "pipeline/resolved_pipeline.h"

namespace nf {

struct stream_schedule {
  resolved_pipeline pipeline;
  int num_layers = 0;
  int num_streams = 0;
  std::vector<int> order;               // nodes (layer * num_nano_ops + nano_op) in enqueue order
  std::vector<int> stream_of;           // node -> stream
  std::vector<std::vector<int>> waits;  // node -> nodes on other streams whose completion it waits for
  std::vector<char> records_event;      // node -> 1 when some other node waits for it

  int num_nano_ops() const { return static_cast<int>(pipeline.nano_ops.size()); }
  const nano_op& nano_op_of(int node) const { return pipeline.nano_ops[node % num_nano_ops()]; }
  int layer_of(int node) const { return node / num_nano_ops(); }
};

// Fails (nf::error) when the unrolled graph has a cycle: the validator rejects such specs first.
stream_schedule make_stream_schedule(resolved_pipeline pipeline, int num_layers);

}  // namespace nf
