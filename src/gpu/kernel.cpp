// Kernel: SPIR-V structural validation (SPIR-V spec 1.6, section 2.3 "Physical Layout of a SPIR-V
// Module and Instruction"; OpEntryPoint is opcode 15, ExecutionModel GLCompute is 5) and the
// compute pipeline with its descriptor-set and pipeline layouts.

#include "pepita/gpu/kernel.hpp"

#include <fcntl.h>

#include <cstring>
#include <string>
#include <utility>

#include "detail/context.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::gpu {
namespace detail {

KernelImpl::~KernelImpl() {
  if (!ctx) return;
  VkDevice d = ctx->device;
  if (pipeline != VK_NULL_HANDLE) vkDestroyPipeline(d, pipeline, nullptr);
  if (pipeline_layout != VK_NULL_HANDLE) vkDestroyPipelineLayout(d, pipeline_layout, nullptr);
  if (set_layout != VK_NULL_HANDLE) vkDestroyDescriptorSetLayout(d, set_layout, nullptr);
  if (module != VK_NULL_HANDLE) vkDestroyShaderModule(d, module, nullptr);
}

}  // namespace detail

namespace {

constexpr std::uint32_t kSpirvMagic = 0x07230203;
constexpr std::uint32_t kOpEntryPoint = 15;
constexpr std::uint32_t kGLCompute = 5;

Error bad_spirv(std::string why) {
  return Error(ErrorCode::InvalidArgument,
               "invalid SPIR-V: " + why +
                   " (compile GLSL with `glslangValidator -V` and check "
                   "with `spirv-val`)");
}

}  // namespace

Result<void> validate_spirv(std::span<const std::uint32_t> spirv, std::string_view entry_point) {
  if (spirv.size() < 5)
    return std::unexpected(bad_spirv("module is " + std::to_string(spirv.size() * 4) +
                                     " bytes, shorter than the 20-byte header"));
  if (spirv[0] != kSpirvMagic)
    return std::unexpected(bad_spirv("bad magic number (byte-swapped or not SPIR-V)"));
  if (spirv[3] == 0) return std::unexpected(bad_spirv("id bound is 0"));
  bool found = false;
  for (std::size_t at = 5; at < spirv.size();) {
    std::uint32_t words = spirv[at] >> 16, opcode = spirv[at] & 0xffff;
    if (words == 0)
      return std::unexpected(
          bad_spirv("instruction at word " + std::to_string(at) + " has a word count of 0"));
    if (words > spirv.size() - at)
      return std::unexpected(bad_spirv("instruction at word " + std::to_string(at) +
                                       " runs past the end of the module (truncated?)"));
    if (opcode == kOpEntryPoint && words >= 4 && spirv[at + 1] == kGLCompute) {
      // The name is a nul-terminated UTF-8 literal packed into words at + 3 ...
      std::string name;
      for (std::size_t w = at + 3; w < at + words; ++w) {
        for (int b = 0; b < 4; ++b) {
          char ch = static_cast<char>((spirv[w] >> (8 * b)) & 0xff);
          if (ch == '\0') goto done;
          name.push_back(ch);
        }
      }
    done:
      if (name == entry_point) found = true;
    }
    at += words;
  }
  if (!found)
    return std::unexpected(
        bad_spirv("no GLCompute entry point named '" + std::string(entry_point) + "'"));
  return {};
}

Result<std::vector<std::uint32_t>> load_spirv(const std::filesystem::path& path) {
  const int raw = sys::open(path.c_str(), O_RDONLY);
  if (raw < 0) return fail_errno(raw, "open SPIR-V file " + path.string());
  UniqueFd fd(raw);
  const int64_t size = sys::file_size(fd.get());
  if (size < 0) return fail_errno(static_cast<int>(size), "stat SPIR-V file " + path.string());
  std::string bytes(static_cast<std::size_t>(size), '\0');
  const int64_t got = sys::read_full(fd.get(), bytes.data(), bytes.size());
  if (got < 0) return fail(ErrorCode::Io, "reading SPIR-V file " + path.string() + " failed");
  bytes.resize(static_cast<std::size_t>(got));  // the file shrank under us: validate what is there
  if (bytes.size() % 4 != 0)
    return fail(ErrorCode::InvalidArgument, "invalid SPIR-V: " + path.string() + " is " +
                                                std::to_string(bytes.size()) +
                                                " bytes, not a whole number of 32-bit words");
  std::vector<std::uint32_t> words(bytes.size() / 4);
  std::memcpy(words.data(), bytes.data(), bytes.size());
  return words;
}

Kernel::Kernel(std::unique_ptr<detail::KernelImpl> impl) noexcept : impl_(std::move(impl)) {}
Kernel::Kernel(Kernel&&) noexcept = default;
Kernel& Kernel::operator=(Kernel&&) noexcept = default;
Kernel::~Kernel() = default;

const KernelLayout& Kernel::layout() const noexcept { return impl_->layout; }

Result<Kernel> Kernel::from_file(Device& device, const std::filesystem::path& path,
                                 KernelLayout layout) {
  auto words = PEPITA_TRY(load_spirv(path));
  auto k = create(device, words, std::move(layout));
  if (!k) return std::unexpected(std::move(k.error()).with_context(path.string()));
  return k;
}

Result<Kernel> Kernel::create(Device& device, std::span<const std::uint32_t> spirv,
                              KernelLayout layout) {
  PEPITA_TRY_VOID(validate_spirv(spirv, layout.entry_point));
  const DeviceInfo& info = device.info();
  if (layout.buffers > info.max_storage_buffers)
    return fail(ErrorCode::InvalidArgument, "kernel layout has " + std::to_string(layout.buffers) +
                                                " storage buffers; the device allows " +
                                                std::to_string(info.max_storage_buffers) +
                                                " per stage");
  if (layout.push_constant_bytes % 4 != 0 ||
      layout.push_constant_bytes > info.max_push_constant_bytes)
    return fail(ErrorCode::InvalidArgument,
                "push-constant size " + std::to_string(layout.push_constant_bytes) +
                    " must be a multiple of 4 and at most " +
                    std::to_string(info.max_push_constant_bytes) + " bytes");

  auto impl = std::make_unique<detail::KernelImpl>();
  impl->ctx = device.ctx_;
  impl->layout = std::move(layout);
  const KernelLayout& lay = impl->layout;
  VkDevice d = impl->ctx->device;

  VkShaderModuleCreateInfo mi{};
  mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  mi.codeSize = spirv.size_bytes();
  mi.pCode = spirv.data();
  if (VkResult r = vkCreateShaderModule(d, &mi, nullptr, &impl->module); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateShaderModule"));

  std::vector<VkDescriptorSetLayoutBinding> bindings(lay.buffers);
  for (std::uint32_t i = 0; i < lay.buffers; ++i) {
    bindings[i] = {};
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo li{};
  li.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  li.bindingCount = lay.buffers;
  li.pBindings = bindings.data();
  if (VkResult r = vkCreateDescriptorSetLayout(d, &li, nullptr, &impl->set_layout); r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateDescriptorSetLayout"));

  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, lay.push_constant_bytes};
  VkPipelineLayoutCreateInfo pli{};
  pli.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  pli.setLayoutCount = 1;
  pli.pSetLayouts = &impl->set_layout;
  pli.pushConstantRangeCount = lay.push_constant_bytes > 0 ? 1 : 0;
  pli.pPushConstantRanges = &range;
  if (VkResult r = vkCreatePipelineLayout(d, &pli, nullptr, &impl->pipeline_layout);
      r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreatePipelineLayout"));

  std::vector<VkSpecializationMapEntry> entries(lay.spec_constants.size());
  for (std::uint32_t i = 0; i < entries.size(); ++i)
    entries[i] = {i, i * static_cast<std::uint32_t>(sizeof(std::uint32_t)), sizeof(std::uint32_t)};
  VkSpecializationInfo spec{};
  spec.mapEntryCount = static_cast<std::uint32_t>(entries.size());
  spec.pMapEntries = entries.data();
  spec.dataSize = lay.spec_constants.size() * sizeof(std::uint32_t);
  spec.pData = lay.spec_constants.data();

  VkComputePipelineCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = impl->module;
  ci.stage.pName = lay.entry_point.c_str();
  ci.stage.pSpecializationInfo = entries.empty() ? nullptr : &spec;
  ci.layout = impl->pipeline_layout;
  if (VkResult r = vkCreateComputePipelines(d, VK_NULL_HANDLE, 1, &ci, nullptr, &impl->pipeline);
      r != VK_SUCCESS)
    return std::unexpected(detail::vk_error(r, "vkCreateComputePipelines"));
  return Kernel(std::move(impl));
}

}  // namespace pepita::gpu
