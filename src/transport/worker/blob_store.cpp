// The worker's content-addressed input store: index, pins, LRU eviction, materialisation.
#include "worker/blob_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::transport::worker {

namespace fs = std::filesystem;

Result<std::unique_ptr<BlobStore>> BlobStore::open(std::string dir, std::uint64_t cap) {
  if (const long rc = sys::ret(::mkdir(dir.c_str(), 0700)); rc < 0 && rc != -EEXIST) {
    return fail_errno(static_cast<int>(rc), "create the input store " + dir);
  }
  std::unique_ptr<BlobStore> s(new BlobStore(std::move(dir), cap));
  std::vector<std::pair<fs::file_time_type, std::pair<Digest, std::uint64_t>>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(s->dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.find(".tmp") != std::string::npos) {
      fs::remove(e.path(), ec);
      continue;
    }
    if (name.size() != 64) continue;  // <hex>.part files stay for resumption
    auto raw = from_hex(name);
    if (!raw || raw->size() != 32) continue;
    Digest d{};
    std::copy(raw->begin(), raw->end(), d.begin());
    std::error_code e2;
    const auto size = e.file_size(e2);
    const auto when = e.last_write_time(e2);
    if (!e2) found.push_back({when, {d, size}});
  }
  if (ec) return fail(ErrorCode::Io, "read the input store " + s->dir_ + ": " + ec.message());
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::lock_guard lock(s->mu_);
  for (const auto& [when, blob] : found) {
    s->entries_[blob.first] = Entry{blob.second, ++s->tick_};
    s->total_ += blob.second;
  }
  s->evict_locked();
  return s;
}

std::string BlobStore::path(const Digest& d) const { return dir_ + "/" + to_hex(d); }
std::string BlobStore::part_path(const Digest& d) const { return path(d) + ".part"; }

bool BlobStore::has(const Digest& d) const {
  std::lock_guard lock(mu_);
  return entries_.contains(d);
}

void BlobStore::pin(const Digest& d) {
  std::lock_guard lock(mu_);
  ++pins_[d];
}

void BlobStore::unpin(const Digest& d) {
  std::lock_guard lock(mu_);
  if (auto it = pins_.find(d); it != pins_.end() && --it->second <= 0) pins_.erase(it);
  evict_locked();
}

void BlobStore::admit(const Digest& d, std::uint64_t size) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = entries_.try_emplace(d, Entry{size, 0});
  if (fresh) total_ += size;
  it->second.last_use = ++tick_;
  evict_locked();
}

void BlobStore::evict_locked() {
  if (cap_ == 0) return;
  while (total_ > cap_) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (pins_.contains(it->first)) continue;
      if (victim == entries_.end() || it->second.last_use < victim->second.last_use) victim = it;
    }
    if (victim == entries_.end()) return;  // everything left is in use
    std::error_code ec;
    fs::remove(path(victim->first), ec);
    total_ -= victim->second.size;
    entries_.erase(victim);
    ++evicted_;
  }
}

Result<void> BlobStore::materialise(const Digest& d, const std::string& dst) {
  const std::string src = path(d);
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(d);
    if (it == entries_.end()) {
      return fail(ErrorCode::NotFound, "input blob " + to_hex(d) + " is not in the store");
    }
    it->second.last_use = ++tick_;
  }
  std::error_code ec;
  fs::create_directories(fs::path(dst).parent_path(), ec);
  if (ec) {
    return fail(ErrorCode::Io, "create the directory of input " + dst + ": " + ec.message());
  }
  fs::remove(dst, ec);
  if (::link(src.c_str(), dst.c_str()) == 0) return {};
  fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
  if (ec) return fail(ErrorCode::Io, "copy input " + src + " to " + dst + ": " + ec.message());
  ::chmod(dst.c_str(), 0444);
  return {};
}

std::uint64_t BlobStore::bytes() const {
  std::lock_guard lock(mu_);
  return total_;
}

std::uint64_t BlobStore::evicted() const {
  std::lock_guard lock(mu_);
  return evicted_;
}

}  // namespace pepita::transport::worker
