// The MILP model handed to CBC through its C interface (one CBC model per solve, freed on every path).
#include "tune/milp.h"

#include <coin/Cbc_C_Interface.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "core/error.h"

namespace nf {

int milp::add_variable(double lower, double upper, double objective, bool integer) {
  NF_CHECK(lower <= upper, "variable bounds [{}, {}]", lower, upper);
  lower_.push_back(lower);
  upper_.push_back(upper);
  objective_.push_back(objective);
  integer_.push_back(integer ? 1 : 0);
  return num_variables() - 1;
}

void milp::add_row(milp_row row) {
  NF_CHECK(row.sense == 'L' || row.sense == 'G' || row.sense == 'E', "row sense {}", row.sense);
  for (const auto& [variable, coefficient] : row.terms)
    NF_CHECK(variable >= 0 && variable < num_variables(), "row names variable {}", variable);
  rows_.push_back(std::move(row));
}

int milp::num_integers() const { return static_cast<int>(std::count(integer_.begin(), integer_.end(), 1)); }

milp_solution milp::solve(double time_limit_s) const {
  std::unique_ptr<Cbc_Model, void (*)(Cbc_Model*)> model(Cbc_newModel(), Cbc_deleteModel);
  Cbc_setLogLevel(model.get(), 0);
  Cbc_setParameter(model.get(), "log", "0");
  Cbc_setParameter(model.get(), "slog", "0");
  // The whole problem in one compressed-sparse-column load (CBC's most used path).
  const int num_vars = num_variables();
  std::vector<std::vector<std::pair<int, double>>> by_column(num_vars);  // [num_variables] (row, coefficient)
  std::vector<double> row_lower(rows_.size()), row_upper(rows_.size());  // [num_rows]
  const double infinity = std::numeric_limits<double>::infinity();
  for (size_t r = 0; r < rows_.size(); ++r) {
    for (const auto& [variable, coefficient] : rows_[r].terms) by_column[variable].emplace_back(static_cast<int>(r), coefficient);
    row_lower[r] = rows_[r].sense == 'L' ? -infinity : rows_[r].rhs;
    row_upper[r] = rows_[r].sense == 'G' ? infinity : rows_[r].rhs;
  }
  std::vector<CoinBigIndex> starts{0};  // [num_variables + 1]
  std::vector<int> indices;
  std::vector<double> values;
  for (const auto& column : by_column) {
    for (const auto& [row, coefficient] : column) {
      indices.push_back(row);
      values.push_back(coefficient);
    }
    starts.push_back(static_cast<CoinBigIndex>(indices.size()));
  }
  Cbc_loadProblem(model.get(), num_vars, static_cast<int>(rows_.size()), starts.data(), indices.data(), values.data(),
                  lower_.data(), upper_.data(), objective_.data(), row_lower.data(), row_upper.data());
  for (int v = 0; v < num_vars; ++v)
    if (integer_[v]) Cbc_setInteger(model.get(), v);
  Cbc_setObjSense(model.get(), 1.0);
  Cbc_setMaximumSeconds(model.get(), std::max(time_limit_s, 0.01));
  Cbc_solve(model.get());

  milp_solution result;
  const bool has_solution = Cbc_bestSolution(model.get()) != nullptr || Cbc_isProvenOptimal(model.get());
  if (Cbc_isProvenOptimal(model.get())) result.status = milp_status::optimal;
  else if (Cbc_isProvenInfeasible(model.get())) result.status = milp_status::infeasible;
  else if (has_solution) result.status = milp_status::feasible;
  else result.status = milp_status::no_solution;
  if (result.has_values()) {
    const double* values = Cbc_getColSolution(model.get());
    result.values.assign(values, values + num_variables());
    result.objective = Cbc_getObjValue(model.get());
  }
  return result;
}

}  // namespace nf
