// ZsPool: zsmalloc-style size classes, fullness groups and compaction.
#include "detail/zs_pool.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace pepita::zram::detail {
namespace {

// zsmalloc's get_pages_per_zspage(): the zspage length (in pages) that wastes the least.
uint32_t pages_per_zspage(uint32_t size) {
  uint32_t best_pages = 1;
  uint32_t best_used = 0;
  for (uint32_t pages = 1; pages <= kZsMaxPagesPerZspage; ++pages) {
    const uint32_t bytes = pages * kZsPageSize;
    const uint32_t waste = bytes % size;
    const uint32_t used_percent = (bytes - waste) * 100 / bytes;
    if (used_percent > best_used) {
      best_used = used_percent;
      best_pages = pages;
    }
  }
  return best_pages;
}

uint32_t group_of(const Zspage& zspage) {
  const uint32_t objs = zspage.size_class->objs;
  if (zspage.inuse == objs) return kZsFullnessGroups - 1;
  return zspage.inuse * (kZsFullnessGroups - 1) / objs;
}

}  // namespace

ZsPool::ZsPool(uint64_t limit_pages) : limit_pages_(limit_pages) {
  SizeClass* previous = nullptr;
  for (int i = static_cast<int>(kZsNumSizes) - 1; i >= 0; --i) {
    const uint32_t size = kZsMinAlloc + static_cast<uint32_t>(i) * kZsClassDelta;
    const uint32_t pages = pages_per_zspage(size);
    const uint32_t objs = pages * kZsPageSize / size;
    if (pages == 1 && objs == 1) huge_class_size_ = size;
    // Same shape as the next larger class: one physical class serves both (zsmalloc's
    // can_merge), so small size differences do not split objects over half-empty slabs.
    if (previous != nullptr && previous->pages == pages && previous->objs == objs) {
      by_size_[i] = previous;
      continue;
    }
    auto cls = std::make_unique<SizeClass>();
    cls->size = size;
    cls->pages = pages;
    cls->objs = objs;
    previous = cls.get();
    by_size_[i] = previous;
    classes_.push_back(std::move(cls));
  }
}

ZsPool::~ZsPool() = default;

SizeClass* ZsPool::class_for(uint32_t size) const noexcept {
  const uint32_t index =
      size <= kZsMinAlloc ? 0 : (size - kZsMinAlloc + kZsClassDelta - 1) / kZsClassDelta;
  return by_size_[std::min(index, kZsNumSizes - 1)];
}

bool ZsPool::reserve_pages(uint32_t pages) noexcept {
  uint64_t total = total_pages_.load(std::memory_order_relaxed);
  uint64_t next = 0;
  do {
    next = total + pages;
    if (limit_pages_ != 0 && next > limit_pages_) return false;
  } while (!total_pages_.compare_exchange_weak(total, next, std::memory_order_relaxed));
  uint64_t max = max_pages_.load(std::memory_order_relaxed);
  while (next > max && !max_pages_.compare_exchange_weak(max, next, std::memory_order_relaxed)) {
  }
  return true;
}

Zspage* ZsPool::new_zspage(SizeClass& cls) noexcept {
  std::byte* memory = arena_.alloc(cls.pages);
  if (memory == nullptr) return nullptr;
  std::unique_ptr<Zspage> zspage;
  try {
    zspage = std::make_unique<Zspage>();
    zspage->owner = std::make_unique_for_overwrite<uint32_t[]>(cls.objs);
  } catch (const std::bad_alloc&) {
    arena_.free(memory, cls.pages);
    return nullptr;
  }
  zspage->memory = memory;
  zspage->size_class = &cls;
  for (uint32_t i = 0; i < cls.objs; ++i)
    zspage->owner[i] = Zspage::kFree | (i + 1 < cls.objs ? i + 1 : Zspage::kEnd);
  zspage->free_head = 0;
  cls.allocated_objs += cls.objs;
  Zspage* raw = zspage.get();
  place(cls, std::move(zspage), 0);
  return raw;
}

void ZsPool::place(SizeClass& cls, std::unique_ptr<Zspage> zspage, uint32_t group) noexcept {
  auto& list = cls.groups[group];
  zspage->group = group;
  zspage->group_pos = static_cast<uint32_t>(list.size());
  list.push_back(std::move(zspage));
}

std::unique_ptr<Zspage> ZsPool::unlink(SizeClass& cls, Zspage* zspage) noexcept {
  auto& list = cls.groups[zspage->group];
  const uint32_t pos = zspage->group_pos;
  std::unique_ptr<Zspage> owned = std::move(list[pos]);
  if (pos + 1 != list.size()) {
    list[pos] = std::move(list.back());
    list[pos]->group_pos = pos;
  }
  list.pop_back();
  return owned;
}

void ZsPool::regroup(SizeClass& cls, Zspage* zspage) noexcept {
  const uint32_t group = group_of(*zspage);
  if (group != zspage->group) place(cls, unlink(cls, zspage), group);
}

uint32_t ZsPool::obj_alloc(SizeClass& cls, Zspage* zspage, uint32_t owner) noexcept {
  const uint32_t obj = zspage->free_head;
  zspage->free_head = zspage->owner[obj] & ~Zspage::kFree;
  zspage->owner[obj] = owner;
  ++zspage->inuse;
  ++cls.used_objs;
  regroup(cls, zspage);
  return obj;
}

bool ZsPool::obj_free(SizeClass& cls, Zspage* zspage, uint32_t obj) noexcept {
  zspage->owner[obj] = Zspage::kFree | zspage->free_head;
  zspage->free_head = obj;
  --zspage->inuse;
  --cls.used_objs;
  if (zspage->inuse == 0) {
    // Empty zspages go back at once, so a discard lowers mem_used_total immediately.
    arena_.free(zspage->memory, cls.pages);
    unlink(cls, zspage);
    cls.allocated_objs -= cls.objs;
    total_pages_.fetch_sub(cls.pages, std::memory_order_relaxed);
    return true;
  }
  regroup(cls, zspage);
  return false;
}

int ZsPool::alloc(uint32_t size, uint32_t owner, ObjRef& out) noexcept {
  if (size == 0 || size > kZsPageSize) return -EINVAL;
  SizeClass& cls = *class_for(size);
  std::lock_guard guard(cls.lock);
  Zspage* zspage = nullptr;
  // Fill the fullest partial zspage first: it keeps the sparse ones sparse, ready to empty.
  for (int group = static_cast<int>(kZsFullnessGroups) - 2; group >= 0 && !zspage; --group)
    if (!cls.groups[group].empty()) zspage = cls.groups[group].back().get();
  if (zspage == nullptr) {
    if (!reserve_pages(cls.pages)) return -ENOSPC;
    zspage = new_zspage(cls);
    if (zspage == nullptr) {
      total_pages_.fetch_sub(cls.pages, std::memory_order_relaxed);
      return -ENOMEM;
    }
  }
  out = {zspage, obj_alloc(cls, zspage, owner)};
  return 0;
}

void ZsPool::free(ObjRef ref) noexcept {
  SizeClass& cls = *ref.zspage->size_class;
  std::lock_guard guard(cls.lock);
  obj_free(cls, ref.zspage, ref.obj);
}

uint64_t ZsPool::compact_class(SizeClass& cls, Relocator& relocator) noexcept {
  std::vector<Zspage*> candidates;
  for (uint32_t group = 0; group + 1 < kZsFullnessGroups; ++group)
    for (auto& zspage : cls.groups[group]) candidates.push_back(zspage.get());
  std::sort(candidates.begin(), candidates.end(),
            [](const Zspage* a, const Zspage* b) { return a->inuse < b->inuse; });
  uint64_t freed = 0;
  size_t lo = 0;
  size_t hi = candidates.size();
  // Sources from the sparse end, destinations from the full end, while the free slots of the class
  // could still hold a whole zspage's objects (zsmalloc's zs_can_compact).
  while (hi > 0 && lo < hi - 1 && cls.allocated_objs - cls.used_objs >= cls.objs) {
    Zspage* src = candidates[lo];
    Zspage* dst = candidates[hi - 1];
    bool src_freed = false;
    for (uint32_t obj = 0; obj < cls.objs && dst->inuse < cls.objs; ++obj) {
      const uint32_t owner = src->owner[obj];
      if ((owner & Zspage::kFree) != 0) continue;
      if (!relocator.try_lock_owner(owner, {src, obj})) continue;  // busy page: leave it
      const uint32_t to = obj_alloc(cls, dst, owner);
      std::memcpy(address({dst, to}), address({src, obj}), cls.size);
      relocator.moved(owner, {dst, to});
      if (obj_free(cls, src, obj)) {
        src_freed = true;
        break;
      }
    }
    if (src_freed) {
      freed += cls.pages;
      ++lo;
    } else if (dst->inuse == cls.objs) {
      --hi;
    } else {
      ++lo;  // src holds only busy objects (or nothing moved): try the next one
    }
  }
  return freed;
}

uint64_t ZsPool::compact(Relocator& relocator) noexcept {
  uint64_t freed = 0;
  for (auto& cls : classes_) {
    std::lock_guard guard(cls->lock);
    freed += compact_class(*cls, relocator);
  }
  pages_compacted_.fetch_add(freed, std::memory_order_relaxed);
  return freed;
}

}  // namespace pepita::zram::detail
