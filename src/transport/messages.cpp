// Message payload codecs. Strings are u32 length + bytes, lists u32 count + items; decode checks
// each length against what remains before touching it.
#include "pepita/transport/messages.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "pepita/core/format.hpp"

namespace pepita::transport {
namespace {

constexpr std::uint32_t kMaxListItems = 1u << 16;  // args, env, files, labels

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(std::uint16_t v) { put_u16(out_, v); }
  void u32(std::uint32_t v) { put_u32(out_, v); }
  void u64(std::uint64_t v) { put_u64(out_, v); }
  void str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    ByteSpan b = as_bytes(s);
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void digest(const Digest& d) { out_.insert(out_.end(), d.begin(), d.end()); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

class Reader {
 public:
  explicit Reader(ByteSpan in, std::string_view what) : in_(in), what_(what) {}

  Result<ByteSpan> take(std::size_t n) {
    if (n > in_.size() - pos_) {
      return fail(ErrorCode::Protocol,
                  std::string(what_) + " payload truncated at byte " + std::to_string(pos_));
    }
    ByteSpan s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  Result<std::uint8_t> u8() { return std::to_integer<std::uint8_t>(PEPITA_TRY(take(1))[0]); }
  Result<std::uint16_t> u16() { return get_u16(PEPITA_TRY(take(2)).data()); }
  Result<std::uint32_t> u32() { return get_u32(PEPITA_TRY(take(4)).data()); }
  Result<std::uint64_t> u64() { return get_u64(PEPITA_TRY(take(8)).data()); }
  // Amounts (cpus, gpu fractions, named counts): finite and non-negative, or Protocol.
  Result<double> amount() {
    const double v = std::bit_cast<double>(PEPITA_TRY(u64()));
    if (!std::isfinite(v) || v < 0) {
      return fail(ErrorCode::Protocol, std::string(what_) + ": bad amount");
    }
    return v;
  }
  Result<bool> boolean() {
    auto v = PEPITA_TRY(u8());
    if (v > 1) return fail(ErrorCode::Protocol, std::string(what_) + ": bad boolean");
    return v == 1;
  }
  Result<std::string> str() {
    const std::uint32_t n = PEPITA_TRY(u32());
    return std::string(as_text(PEPITA_TRY(take(n))));
  }
  Result<Digest> digest() {
    ByteSpan s = PEPITA_TRY(take(32));
    Digest d{};
    std::copy(s.begin(), s.end(), d.begin());
    return d;
  }
  Result<std::uint32_t> count() {
    const std::uint32_t n = PEPITA_TRY(u32());
    if (n > kMaxListItems) {
      return fail(ErrorCode::Protocol, std::string(what_) + ": list of " + std::to_string(n) +
                                           " items exceeds " + std::to_string(kMaxListItems));
    }
    return n;
  }
  Result<void> finish() const {
    if (pos_ != in_.size()) {
      return fail(ErrorCode::Protocol, std::string(what_) + " payload has " +
                                           std::to_string(in_.size() - pos_) + " trailing bytes");
    }
    return {};
  }

 private:
  ByteSpan in_;
  std::size_t pos_ = 0;
  std::string_view what_;
};

// ---- protocol 3: resources ----
// Inventory: cpus (u32 list), numa (count, then node i32 + u32 list), memory u64, gpus (string
// list), named (count, then name + f64).
// Allocation: attempt u32, cpus f64, cores (u32 list), memory u64, gpus (count, then id +
// fraction f64), named (count, then name + f64), pids u32.

void put_named(Writer& w, const std::map<std::string, double>& named) {
  w.u32(static_cast<std::uint32_t>(named.size()));
  for (const auto& [k, v] : named) {
    w.str(k);
    w.f64(v);
  }
}

Result<std::map<std::string, double>> get_named(Reader& r) {
  std::map<std::string, double> out;
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    auto k = PEPITA_TRY(r.str());
    out[std::move(k)] = PEPITA_TRY(r.amount());
  }
  return out;
}

// ---- protocol 5: staged files: list of (str path, u64 size, 32 B sha256) ----

void put_staged(Writer& w, const std::vector<StagedFile>& files) {
  w.u32(static_cast<std::uint32_t>(files.size()));
  for (const auto& f : files) {
    w.str(f.path);
    w.u64(f.size);
    w.digest(f.sha256);
  }
}

Result<std::vector<StagedFile>> get_staged(Reader& r) {
  std::vector<StagedFile> out;
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    StagedFile f;
    f.path = PEPITA_TRY(r.str());
    f.size = PEPITA_TRY(r.u64());
    f.sha256 = PEPITA_TRY(r.digest());
    out.push_back(std::move(f));
  }
  return out;
}

void put_cores(Writer& w, const std::vector<unsigned>& cores) {
  w.u32(static_cast<std::uint32_t>(cores.size()));
  for (unsigned c : cores) w.u32(c);
}

Result<std::vector<unsigned>> get_cores(Reader& r) {
  std::vector<unsigned> out;
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) out.push_back(PEPITA_TRY(r.u32()));
  return out;
}

void put_inventory(Writer& w, const task::Inventory& inv) {
  put_cores(w, inv.cpus);
  w.u32(static_cast<std::uint32_t>(inv.numa.size()));
  for (const auto& [node, cores] : inv.numa) {
    w.u32(static_cast<std::uint32_t>(node));
    put_cores(w, cores);
  }
  w.u64(inv.memory);
  w.u32(static_cast<std::uint32_t>(inv.gpus.size()));
  for (const auto& g : inv.gpus) w.str(g);
  put_named(w, inv.named);
}

Result<task::Inventory> get_inventory(Reader& r) {
  task::Inventory inv;
  inv.cpus = PEPITA_TRY(get_cores(r));
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    const int node = static_cast<int>(PEPITA_TRY(r.u32()));
    inv.numa[node] = PEPITA_TRY(get_cores(r));
  }
  inv.memory = PEPITA_TRY(r.u64());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) inv.gpus.push_back(PEPITA_TRY(r.str()));
  inv.named = PEPITA_TRY(get_named(r));
  return inv;
}

void put_allocation(Writer& w, const std::optional<task::Allocation>& a) {
  w.u8(a ? 1 : 0);
  if (!a) return;
  w.u32(a->attempt);
  w.f64(a->cpus);
  put_cores(w, a->cores);
  w.u64(a->memory);
  w.u32(static_cast<std::uint32_t>(a->gpus.size()));
  for (const auto& g : a->gpus) {
    w.str(g.id);
    w.f64(g.fraction);
  }
  put_named(w, a->named);
  w.u32(a->pids);
}

Result<std::optional<task::Allocation>> get_allocation(Reader& r) {
  if (!PEPITA_TRY(r.boolean())) return std::optional<task::Allocation>{};
  task::Allocation a;
  a.attempt = PEPITA_TRY(r.u32());
  a.cpus = PEPITA_TRY(r.amount());
  a.cores = PEPITA_TRY(get_cores(r));
  a.memory = PEPITA_TRY(r.u64());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    task::GpuShare g;
    g.id = PEPITA_TRY(r.str());
    g.fraction = PEPITA_TRY(r.amount());
    a.gpus.push_back(std::move(g));
  }
  a.named = PEPITA_TRY(get_named(r));
  a.pids = PEPITA_TRY(r.u32());
  return std::optional<task::Allocation>(std::move(a));
}

// ---- protocol 4: sandbox ----
// SandboxPolicy: u8 level (0 none, 1 standard, 2 strict, 3 custom), bools user_ns, mount_ns,
// pid_ns, ipc_uts_ns, u8 network (0 host, 1 none), bools no_new_privs, seccomp, u32 id,
// opt<u64> disk, list<str> read_only, list<str> writable, u64 max_open_files, u64
// max_file_size, u64 max_processes.

void put_sandbox(Writer& w, const task::SandboxPolicy& p) {
  w.u8(static_cast<std::uint8_t>(p.level));
  w.u8(p.user_ns ? 1 : 0);
  w.u8(p.mount_ns ? 1 : 0);
  w.u8(p.pid_ns ? 1 : 0);
  w.u8(p.ipc_uts_ns ? 1 : 0);
  w.u8(static_cast<std::uint8_t>(p.network));
  w.u8(p.no_new_privs ? 1 : 0);
  w.u8(p.seccomp ? 1 : 0);
  w.u32(p.id);
  w.u8(p.disk ? 1 : 0);
  if (p.disk) w.u64(*p.disk);
  w.u32(static_cast<std::uint32_t>(p.read_only.size()));
  for (const auto& s : p.read_only) w.str(s);
  w.u32(static_cast<std::uint32_t>(p.writable.size()));
  for (const auto& s : p.writable) w.str(s);
  w.u64(p.max_open_files);
  w.u64(p.max_file_size);
  w.u64(p.max_processes);
}

Result<task::SandboxPolicy> get_sandbox(Reader& r) {
  task::SandboxPolicy p;
  const auto level = PEPITA_TRY(r.u8());
  if (level > static_cast<std::uint8_t>(task::SandboxLevel::Custom)) {
    return fail(ErrorCode::Protocol, "submit: unknown sandbox level " + std::to_string(level));
  }
  p.level = static_cast<task::SandboxLevel>(level);
  p.user_ns = PEPITA_TRY(r.boolean());
  p.mount_ns = PEPITA_TRY(r.boolean());
  p.pid_ns = PEPITA_TRY(r.boolean());
  p.ipc_uts_ns = PEPITA_TRY(r.boolean());
  const auto network = PEPITA_TRY(r.u8());
  if (network > static_cast<std::uint8_t>(task::SandboxNetwork::None)) {
    return fail(ErrorCode::Protocol, "submit: unknown sandbox network " + std::to_string(network));
  }
  p.network = static_cast<task::SandboxNetwork>(network);
  p.no_new_privs = PEPITA_TRY(r.boolean());
  p.seccomp = PEPITA_TRY(r.boolean());
  p.id = PEPITA_TRY(r.u32());
  if (PEPITA_TRY(r.boolean())) p.disk = PEPITA_TRY(r.u64());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n)
    p.read_only.push_back(PEPITA_TRY(r.str()));
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n)
    p.writable.push_back(PEPITA_TRY(r.str()));
  p.max_open_files = PEPITA_TRY(r.u64());
  p.max_file_size = PEPITA_TRY(r.u64());
  p.max_processes = PEPITA_TRY(r.u64());
  // A bind is an absolute path; a policy that says none has nothing else set (an executor
  // reads `none` as "no sandbox" and would drop the parts silently).
  for (const auto* binds : {&p.read_only, &p.writable}) {
    for (const auto& path : *binds) {
      if (path.empty() || path.front() != '/' || path.find('\0') != std::string::npos) {
        return fail(ErrorCode::Protocol,
                    "submit: sandbox bind '" + path + "' is not an absolute path");
      }
    }
  }
  if (p.level == task::SandboxLevel::None) {
    task::SandboxPolicy parts = p;
    parts.id = task::SandboxPolicy{}.id;
    if (parts != task::SandboxPolicy::none()) {
      return fail(ErrorCode::Protocol,
                  "submit: sandbox level none with parts set; send level custom");
    }
  }
  return p;
}

}  // namespace

std::string_view to_string(TaskStatus status) noexcept {
  switch (status) {
    case TaskStatus::Succeeded: return "succeeded";
    case TaskStatus::Failed: return "failed";
    case TaskStatus::Signaled: return "signaled";
    case TaskStatus::TimedOut: return "timed-out";
    case TaskStatus::Cancelled: return "cancelled";
    case TaskStatus::SpawnError: return "spawn-error";
    case TaskStatus::Returned: return "returned";
    case TaskStatus::Skipped: return "skipped";
    case TaskStatus::Rejected: return "rejected";
    case TaskStatus::OutOfMemory: return "oom";
    case TaskStatus::Sandboxed: return "sandbox";
  }
  return "unknown";
}

Bytes encode(const RegisterMsg& m) {
  Writer w;
  w.u32(m.slots);
  w.u32(static_cast<std::uint32_t>(m.backends.size()));
  for (const auto& b : m.backends) w.str(b);
  w.u32(static_cast<std::uint32_t>(m.labels.size()));
  for (const auto& [k, v] : m.labels) {
    w.str(k);
    w.str(v);
  }
  w.str(m.name);
  put_inventory(w, m.inventory);
  return w.take();
}

Result<RegisterMsg> decode_register(ByteSpan payload) {
  Reader r(payload, "register");
  RegisterMsg m;
  m.slots = PEPITA_TRY(r.u32());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n)
    m.backends.push_back(PEPITA_TRY(r.str()));
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    auto k = PEPITA_TRY(r.str());
    m.labels[std::move(k)] = PEPITA_TRY(r.str());
  }
  m.name = PEPITA_TRY(r.str());
  m.inventory = PEPITA_TRY(get_inventory(r));
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const SubmitMsg& m) {
  Writer w;
  w.u32(m.attempt);
  w.u8(static_cast<std::uint8_t>(m.kind));
  w.str(m.path);
  w.u32(static_cast<std::uint32_t>(m.args.size()));
  for (const auto& a : m.args) w.str(a);
  w.u32(static_cast<std::uint32_t>(m.env.size()));
  for (const auto& [k, v] : m.env) {
    w.str(k);
    w.str(v);
  }
  w.u8(m.inherit_env ? 1 : 0);
  w.str(m.cwd);
  w.str(m.stdin_data);
  w.u64(m.timeout_ns);
  w.u64(m.output_cap);
  w.u32(static_cast<std::uint32_t>(m.files.size()));
  for (const auto& f : m.files) {
    w.str(f.name);
    w.digest(f.sha256);
    w.u8(f.executable ? 1 : 0);
  }
  put_allocation(w, m.allocation);
  put_sandbox(w, m.sandbox);
  put_staged(w, m.inputs);
  w.u32(static_cast<std::uint32_t>(m.outputs.size()));
  for (const auto& o : m.outputs) w.str(o);
  return w.take();
}

Result<SubmitMsg> decode_submit(ByteSpan payload) {
  Reader r(payload, "submit");
  SubmitMsg m;
  m.attempt = PEPITA_TRY(r.u32());
  const auto kind = PEPITA_TRY(r.u8());
  if (kind != 1 && kind != 2) {
    return fail(ErrorCode::Protocol, "submit: unknown task kind " + std::to_string(kind));
  }
  m.kind = static_cast<TaskKind>(kind);
  m.path = PEPITA_TRY(r.str());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) m.args.push_back(PEPITA_TRY(r.str()));
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    auto k = PEPITA_TRY(r.str());
    m.env[std::move(k)] = PEPITA_TRY(r.str());
  }
  m.inherit_env = PEPITA_TRY(r.boolean());
  m.cwd = PEPITA_TRY(r.str());
  m.stdin_data = PEPITA_TRY(r.str());
  m.timeout_ns = PEPITA_TRY(r.u64());
  m.output_cap = PEPITA_TRY(r.u64());
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    FileRef f;
    f.name = PEPITA_TRY(r.str());
    f.sha256 = PEPITA_TRY(r.digest());
    f.executable = PEPITA_TRY(r.boolean());
    m.files.push_back(std::move(f));
  }
  m.allocation = PEPITA_TRY(get_allocation(r));
  m.sandbox = PEPITA_TRY(get_sandbox(r));
  m.inputs = PEPITA_TRY(get_staged(r));
  for (std::uint32_t n = PEPITA_TRY(r.count()); n > 0; --n) {
    m.outputs.push_back(PEPITA_TRY(r.str()));
  }
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const StartedMsg& m) {
  Writer w;
  w.u32(m.attempt);
  return w.take();
}

Result<StartedMsg> decode_started(ByteSpan payload) {
  Reader r(payload, "started");
  StartedMsg m;
  m.attempt = PEPITA_TRY(r.u32());
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const LogMsg& m) {
  Writer w;
  w.u8(m.stream);
  w.str(m.data);
  return w.take();
}

Result<LogMsg> decode_log(ByteSpan payload) {
  Reader r(payload, "log");
  LogMsg m;
  m.stream = PEPITA_TRY(r.u8());
  m.data = PEPITA_TRY(r.str());
  PEPITA_TRY_VOID(r.finish());
  if (m.stream != 1 && m.stream != 2) {
    return fail(ErrorCode::Protocol, "log frame names stream " + std::to_string(m.stream) +
                                         "; only 1 (stdout) and 2 (stderr) exist");
  }
  return m;
}

Bytes encode(const ResultMsg& m) {
  Writer w;
  w.u32(m.attempt);
  w.u8(static_cast<std::uint8_t>(m.status));
  w.u32(static_cast<std::uint32_t>(m.exit_code));
  w.u32(static_cast<std::uint32_t>(m.signal));
  w.u64(static_cast<std::uint64_t>(m.wall_ns));
  w.str(m.stdout_data);
  w.str(m.stderr_data);
  w.str(m.error);
  w.u64(static_cast<std::uint64_t>(m.cpu_ns));
  w.u64(static_cast<std::uint64_t>(m.max_rss_kb));
  w.u64(m.stdout_bytes);
  w.u64(m.stderr_bytes);
  w.u64(m.peak_memory);
  w.u64(m.memory_limit);
  put_allocation(w, m.allocation);
  put_staged(w, m.outputs);
  return w.take();
}

Result<ResultMsg> decode_result(ByteSpan payload) {
  Reader r(payload, "result");
  ResultMsg m;
  m.attempt = PEPITA_TRY(r.u32());
  const auto status = PEPITA_TRY(r.u8());
  if (status > kMaxTaskStatus) {
    return fail(ErrorCode::Protocol, "result: unknown status " + std::to_string(status));
  }
  m.status = static_cast<TaskStatus>(status);
  m.exit_code = static_cast<std::int32_t>(PEPITA_TRY(r.u32()));
  m.signal = static_cast<std::int32_t>(PEPITA_TRY(r.u32()));
  m.wall_ns = static_cast<std::int64_t>(PEPITA_TRY(r.u64()));
  m.stdout_data = PEPITA_TRY(r.str());
  m.stderr_data = PEPITA_TRY(r.str());
  m.error = PEPITA_TRY(r.str());
  m.cpu_ns = static_cast<std::int64_t>(PEPITA_TRY(r.u64()));
  m.max_rss_kb = static_cast<std::int64_t>(PEPITA_TRY(r.u64()));
  m.stdout_bytes = PEPITA_TRY(r.u64());
  m.stderr_bytes = PEPITA_TRY(r.u64());
  m.peak_memory = PEPITA_TRY(r.u64());
  m.memory_limit = PEPITA_TRY(r.u64());
  m.allocation = PEPITA_TRY(get_allocation(r));
  m.outputs = PEPITA_TRY(get_staged(r));
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const FetchBlobMsg& m) {
  Writer w;
  w.digest(m.sha256);
  w.u64(m.offset);
  w.u32(m.length);
  return w.take();
}

Result<FetchBlobMsg> decode_fetch_blob(ByteSpan payload) {
  Reader r(payload, "fetch-blob");
  FetchBlobMsg m;
  m.sha256 = PEPITA_TRY(r.digest());
  m.offset = PEPITA_TRY(r.u64());
  m.length = PEPITA_TRY(r.u32());
  if (m.length == 0 || m.length > kMaxChunk) {
    return fail(ErrorCode::Protocol, "fetch-blob: length " + std::to_string(m.length) +
                                         " is not in 1.." + std::to_string(kMaxChunk));
  }
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const BlobChunkMsg& m) {
  Writer w;
  w.digest(m.sha256);
  w.u64(m.offset);
  w.u64(m.size);
  w.str(m.data);
  w.str(m.error);
  return w.take();
}

Result<BlobChunkMsg> decode_blob_chunk(ByteSpan payload) {
  Reader r(payload, "blob-chunk");
  BlobChunkMsg m;
  m.sha256 = PEPITA_TRY(r.digest());
  m.offset = PEPITA_TRY(r.u64());
  m.size = PEPITA_TRY(r.u64());
  m.data = PEPITA_TRY(r.str());
  m.error = PEPITA_TRY(r.str());
  PEPITA_TRY_VOID(r.finish());
  if (m.data.size() > kMaxChunk || m.offset > m.size || m.data.size() > m.size - m.offset) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("blob-chunk: {} bytes at offset {} do not fit a blob of {} bytes",
                            m.data.size(), m.offset, m.size));
  }
  return m;
}

Bytes encode(const OutputChunkMsg& m) {
  Writer w;
  w.u32(m.attempt);
  w.u32(m.index);
  w.u64(m.offset);
  w.u64(m.size);
  w.str(m.data);
  return w.take();
}

Result<OutputChunkMsg> decode_output_chunk(ByteSpan payload) {
  Reader r(payload, "output-chunk");
  OutputChunkMsg m;
  m.attempt = PEPITA_TRY(r.u32());
  m.index = PEPITA_TRY(r.u32());
  m.offset = PEPITA_TRY(r.u64());
  m.size = PEPITA_TRY(r.u64());
  m.data = PEPITA_TRY(r.str());
  PEPITA_TRY_VOID(r.finish());
  if (m.data.size() > kMaxChunk || m.offset > m.size || m.data.size() > m.size - m.offset) {
    return fail(ErrorCode::Protocol,
                pepita::fmt("output-chunk: {} bytes at offset {} do not fit a file of {} bytes",
                            m.data.size(), m.offset, m.size));
  }
  return m;
}

Result<void> check_staged_path(std::string_view path, std::string_view what) {
  const auto bad = [&](std::string_view why) {
    return fail(ErrorCode::InvalidArgument,
                std::string(what).append(" path '").append(path).append("' ").append(why));
  };
  if (path.empty()) return bad("is empty; declare a file relative to the task's directory");
  if (path.size() > 4096) return bad("is longer than 4096 bytes");
  if (path.find('\0') != std::string_view::npos) return bad("contains a NUL byte");
  if (path.front() == '/') {
    return bad("is absolute; declare it relative to the task's working directory");
  }
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, end - start);
    if (part == "..") return bad("has a '..' component: it would leave the task's directory");
    if (part == ".") return bad("has a '.' component; write it without");
    if (part.empty() && end != path.size()) return bad("has an empty component ('//')");
    start = end + 1;
  }
  if (path.back() == '/') return bad("ends in '/': declare files, not directories");
  return {};
}

Bytes encode(const HeartbeatMsg& m) {
  Writer w;
  w.u64(m.sent_ns);
  w.u32(m.free_slots);
  w.u32(m.running);
  return w.take();
}

Result<HeartbeatMsg> decode_heartbeat(ByteSpan payload) {
  Reader r(payload, "heartbeat");
  HeartbeatMsg m;
  m.sent_ns = PEPITA_TRY(r.u64());
  m.free_slots = PEPITA_TRY(r.u32());
  m.running = PEPITA_TRY(r.u32());
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const UploadMsg& m) {
  Writer w;
  w.digest(m.sha256);
  w.str(m.data);
  return w.take();
}

Result<UploadMsg> decode_upload(ByteSpan payload) {
  Reader r(payload, "upload");
  UploadMsg m;
  m.sha256 = PEPITA_TRY(r.digest());
  m.data = PEPITA_TRY(r.str());
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const HaveBlobMsg& m) {
  Writer w;
  w.digest(m.sha256);
  w.u8(m.present ? 1 : 0);
  return w.take();
}

Result<HaveBlobMsg> decode_have_blob(ByteSpan payload) {
  Reader r(payload, "have-blob");
  HaveBlobMsg m;
  m.sha256 = PEPITA_TRY(r.digest());
  m.present = PEPITA_TRY(r.boolean());
  PEPITA_TRY_VOID(r.finish());
  return m;
}

Bytes encode(const ErrorMsg& m) {
  Writer w;
  w.u16(m.code);
  w.str(m.reason);
  return w.take();
}

Result<ErrorMsg> decode_error(ByteSpan payload) {
  Reader r(payload, "error");
  ErrorMsg m;
  m.code = PEPITA_TRY(r.u16());
  m.reason = PEPITA_TRY(r.str());
  PEPITA_TRY_VOID(r.finish());
  return m;
}

}  // namespace pepita::transport
