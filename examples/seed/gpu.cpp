// The reference crate's gpu module example (gpu.rs) in C++: the default device, a compute shader
// (SPIR-V built from add.comp, loaded from add.spv next to this program — the crate loads WGSL),
// two input buffers and an uninitialised output buffer, one dispatch, and the sums read back.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "pepita/pepita.hpp"

namespace {

std::vector<std::uint32_t> read_spirv(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::uint32_t> words(bytes.size() / 4);
  for (std::size_t i = 0; i < words.size(); ++i) {
    std::memcpy(&words[i], bytes.data() + 4 * i, 4);
  }
  return words;
}

}  // namespace

int main() {
  using namespace pepita::gpu;
  constexpr std::uint32_t n = 1000;
  auto device = GpuDevice::open();  // GpuDevice::default_device()
  if (!device) {
    std::fprintf(stderr, "device: %s\n", device.error().to_string().c_str());
    return 1;
  }
  auto shader = ComputeShader::from_spirv(read_spirv("add.spv"));
  if (!shader) {
    std::fprintf(stderr, "shader: %s\n", shader.error().to_string().c_str());
    return 1;
  }
  std::vector<float> a(n), b(n), c(n, -1.0f);
  for (std::uint32_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 2.0f * static_cast<float>(i);
  }
  auto input_a = create_buffer(*device, std::as_bytes(std::span(a)), BufferUsage::STORAGE);
  auto input_b = create_buffer(*device, std::as_bytes(std::span(b)), BufferUsage::STORAGE);
  auto output = create_buffer_uninit(*device, n * sizeof(float), BufferUsage::STORAGE);
  if (!input_a || !input_b || !output) {
    std::fprintf(stderr, "buffer: %s\n",
                 (!input_a   ? input_a.error()
                  : !input_b ? input_b.error()
                             : output.error())
                     .to_string()
                     .c_str());
    return 1;
  }
  const std::array<std::uint32_t, 1> push{n};
  auto ran = dispatch(*device, *shader, {&*input_a, &*input_b, &*output},
                      Groups{.x = (n + 63) / 64}, std::as_bytes(std::span(push)));
  if (!ran) {
    std::fprintf(stderr, "dispatch: %s\n", ran.error().to_string().c_str());
    return 1;
  }
  if (auto read = output->download(std::span(c)); !read) {
    std::fprintf(stderr, "read: %s\n", read.error().to_string().c_str());
    return 1;
  }
  std::uint32_t wrong = 0;
  for (std::uint32_t i = 0; i < n; ++i) wrong += c[i] == 3.0f * static_cast<float>(i) ? 0 : 1;
  std::printf("workgroup size %u, c[0] %.1f c[999] %.1f, wrong %u\n", shader->workgroup_size()[0],
              c[0], c[n - 1], wrong);
  return wrong == 0 ? 0 : 1;
}
