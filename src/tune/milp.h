// A small mixed-integer linear program, solved by COIN-OR CBC: variables with bounds, linear rows, a
// minimised objective and a time limit. The stages of the pipeline search build their models on it.
#pragma once

#include <utility>
#include <vector>

namespace nf {

// One row: sum of coefficient * variable, compared with a right-hand side.
struct milp_row {
  std::vector<std::pair<int, double>> terms;  // (variable, coefficient)
  char sense = 'G';                           // 'L' (<=), 'G' (>=) or 'E' (=)
  double rhs = 0.0;
};

enum class milp_status {
  optimal,     // proven optimal
  feasible,    // a solution, but the time limit stopped the proof
  infeasible,  // no solution exists
  no_solution, // the time limit came before any solution
};

struct milp_solution {
  milp_status status = milp_status::no_solution;
  double objective = 0.0;
  std::vector<double> values;  // [num_variables]
  bool has_values() const { return status == milp_status::optimal || status == milp_status::feasible; }
};

class milp {
 public:
  // A new variable in [lower, upper] with this objective coefficient; returns its index.
  int add_variable(double lower, double upper, double objective, bool integer);
  void add_row(milp_row row);
  // Convenience: sum(terms) >= rhs, <= rhs, == rhs.
  void add_ge(std::vector<std::pair<int, double>> terms, double rhs) { add_row({std::move(terms), 'G', rhs}); }
  void add_le(std::vector<std::pair<int, double>> terms, double rhs) { add_row({std::move(terms), 'L', rhs}); }
  void add_eq(std::vector<std::pair<int, double>> terms, double rhs) { add_row({std::move(terms), 'E', rhs}); }

  int num_variables() const { return static_cast<int>(lower_.size()); }
  int num_integers() const;
  int num_rows() const { return static_cast<int>(rows_.size()); }

  // Minimises the objective within `time_limit_s` seconds of CBC time.
  milp_solution solve(double time_limit_s) const;

 private:
  std::vector<double> lower_, upper_, objective_;  // [num_variables]
  std::vector<char> integer_;                      // [num_variables]
  std::vector<milp_row> rows_;
};

}  // namespace nf
