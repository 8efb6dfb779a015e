#pragma once
// The one bridge from pepita::Error to Python: an Error becomes the exception pepita.errors maps
// its code to (InvalidArgument -> InvalidArgumentError, also a ValueError; TimedOut ->
// TimedOutError, also a TimeoutError; ...), with the message intact.

#include <pybind11/pybind11.h>

#include <utility>

#include "pepita/error.hpp"

namespace pepita::python {

namespace py = pybind11;

/// Raises the Python exception for `error` (the GIL must be held): throws py::error_already_set.
[[noreturn]] void raise(const Error& error);

/// The value of `r`, or raise(r.error()). Call with the GIL held.
template <typename T>
T unwrap(Result<T> r) {
  if (!r) raise(r.error());
  return std::move(*r);
}
inline void unwrap(const Result<void>& r) {
  if (!r) raise(r.error());
}

/// Raises TypeError / ValueError with `message` (the GIL must be held).
[[noreturn]] void type_error(const std::string& message);
[[noreturn]] void value_error(const std::string& message);

}  // namespace pepita::python
