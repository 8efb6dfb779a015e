// pepita._pepita: the extension module behind `import pepita` (issue 26). The Python API lives
// in pepita/__init__.py; this module holds what must be native: the pool (pool.cpp) and the
// kernels, the gpu submodule and ZramStore over numpy buffers (kernels.cpp).
#include <pybind11/pybind11.h>

#include <string>

#include "pepita/version.hpp"

namespace pepita::python {
void bind_pool(pybind11::module_& m);
void bind_kernels(pybind11::module_& m);
void bind_gpu(pybind11::module_& m);
}  // namespace pepita::python

PYBIND11_MODULE(_pepita, m) {
  m.doc() = "pepita's native layer; use the `pepita` package";
  pepita::python::bind_pool(m);
  pepita::python::bind_kernels(m);
  pepita::python::bind_gpu(m);
}
