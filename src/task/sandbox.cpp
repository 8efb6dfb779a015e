// The sandbox levels as values (include/pepita/task/sandbox.hpp).
#include "pepita/task/sandbox.hpp"

#include <string>

namespace pepita::task {

SandboxPolicy SandboxPolicy::standard() {
  SandboxPolicy p;
  p.level = SandboxLevel::Standard;
  p.user_ns = p.mount_ns = p.pid_ns = p.ipc_uts_ns = p.no_new_privs = p.seccomp = true;
  p.network = SandboxNetwork::Host;
  p.max_processes = 1024;
  return p;
}

SandboxPolicy SandboxPolicy::strict() {
  SandboxPolicy p = standard();
  p.level = SandboxLevel::Strict;
  p.network = SandboxNetwork::None;
  p.disk = std::uint64_t{1} << 30;
  p.max_processes = 256;
  return p;
}

bool SandboxPolicy::same_parts_as(const SandboxPolicy& other) const {
  SandboxPolicy a = *this;
  a.level = other.level;
  a.read_only = other.read_only;
  a.writable = other.writable;
  return a == other;
}

Result<SandboxPolicy> SandboxPolicy::parse(std::string_view level) {
  if (level == "none") return none();
  if (level == "standard") return standard();
  if (level == "strict") return strict();
  return fail(
      ErrorCode::InvalidArgument,
      std::string("unknown sandbox '")
          .append(level)
          .append("': use none, standard or strict (or a table of parts: see docs/sandbox.md)"));
}

std::string_view to_string(SandboxLevel level) noexcept {
  switch (level) {
    case SandboxLevel::None: return "none";
    case SandboxLevel::Standard: return "standard";
    case SandboxLevel::Strict: return "strict";
    case SandboxLevel::Custom: return "custom";
  }
  return "unknown";
}

}  // namespace pepita::task
