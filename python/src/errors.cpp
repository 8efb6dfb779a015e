// pepita::Error -> pepita.errors (see errors.hpp).
#include "errors.hpp"

#include <string>

namespace pepita::python {

void raise(const Error& error) {
  py::object make = py::module_::import("pepita.errors").attr("_from_code");
  py::object exc = make(std::string(to_string(error.code())), error.message(), error.sys_errno());
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

void type_error(const std::string& message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw py::error_already_set();
}

void value_error(const std::string& message) {
  PyErr_SetString(PyExc_ValueError, message.c_str());
  throw py::error_already_set();
}

}  // namespace pepita::python
