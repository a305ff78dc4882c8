// Stream schedule: enqueue order, and the minimal cross-stream waits that keep every dependency.
#include "pipeline/stream_schedule.h"

#include <algorithm>

#include "core/error.h"

namespace nf {

stream_schedule make_stream_schedule(resolved_pipeline pipeline, int num_layers) {
  stream_schedule s;
  s.num_layers = num_layers;
  s.num_streams = static_cast<int>(pipeline.streams.size());
  const unrolled_graph graph = unroll(pipeline, num_layers);
  s.order = topological_order(graph);
  if (s.order.size() != size_t(graph.num_nodes())) fail("pipeline \"{}\": its nano-op graph has a cycle", pipeline.name);
  const int num_nodes = graph.num_nodes();
  s.stream_of.resize(num_nodes);
  for (int v = 0; v < num_nodes; ++v) s.stream_of[v] = pipeline.nano_ops[graph.nano_op_of(v)].stream;

  std::vector<int> position(num_nodes);  // node -> index in the enqueue order
  for (int i = 0; i < num_nodes; ++i) position[s.order[i]] = i;
  std::vector<std::vector<int>> predecessors(num_nodes);
  for (int v = 0; v < num_nodes; ++v)
    for (int w : graph.successors[v]) predecessors[w].push_back(v);

  // covered[a][b]: the enqueue position of the latest node of stream b that stream a has already waited for.
  std::vector<std::vector<int>> covered(s.num_streams, std::vector<int>(s.num_streams, -1));
  s.waits.resize(num_nodes);
  s.records_event.assign(num_nodes, 0);
  for (int node : s.order) {
    const int stream = s.stream_of[node];
    std::vector<int> latest(s.num_streams, -1);  // per other stream: its latest predecessor of `node`
    for (int p : predecessors[node]) {
      const int ps = s.stream_of[p];
      if (ps == stream) continue;
      if (latest[ps] < 0 || position[p] > position[latest[ps]]) latest[ps] = p;
    }
    for (int other = 0; other < s.num_streams; ++other) {
      const int p = latest[other];
      if (p < 0 || position[p] <= covered[stream][other]) continue;
      s.waits[node].push_back(p);
      s.records_event[p] = 1;
      covered[stream][other] = position[p];
    }
  }
  s.pipeline = std::move(pipeline);
  return s;
}

}  // namespace nf
