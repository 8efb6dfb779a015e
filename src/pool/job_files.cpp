// Declared files in job files (issue 24): `inputs = [...]` and `outputs = [...]` resolved against
// each task's cwd, input globs expanded, dependencies inferred from who writes what, and the bad
// inputs refused before anything runs, each at its "file:line:column".
#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "detail/job_toml.hpp"
#include "pepita/core/format.hpp"

namespace pepita::pool::detail {
namespace {

namespace fs = std::filesystem;

bool is_glob(const std::string& p) { return p.find_first_of("*?[") != std::string::npos; }

std::string absolute_in(const std::string& cwd, const std::string& path) {
  fs::path p(path);
  if (p.is_relative()) p = fs::path(cwd) / p;
  return p.lexically_normal().string();
}

bool under(const std::string& path, const std::string& dir) {
  std::string prefix = dir;
  if (!prefix.ends_with('/')) prefix.push_back('/');
  return path.starts_with(prefix);
}

// The real path of the nearest existing ancestor of `path`, plus the rest: where a file
// created at `path` would land once symlinks in its existing parents are followed.
std::string resolved_location(const std::string& path) {
  fs::path p = fs::path(path).parent_path();
  fs::path rest = fs::path(path).filename();
  while (!p.empty()) {
    char buf[PATH_MAX];
    if (::realpath(p.c_str(), buf) != nullptr) return (fs::path(buf) / rest).lexically_normal();
    rest = p.filename() / rest;
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return path;
}

}  // namespace

Result<void> resolve_job_files(
    const Ctx& ctx, const std::vector<std::string>& names, std::vector<TaskFiles>& files,
    const std::string& state_dir,
    std::vector<std::vector<std::pair<std::size_t, const toml::node*>>>& deps,
    std::map<std::pair<std::size_t, std::size_t>, std::string>& inferred) {
  // Outputs first: every reader needs to know who writes what.
  std::unordered_map<std::string, std::pair<std::size_t, const toml::node*>> writer;
  std::string real_state;
  if (!state_dir.empty()) {
    const std::string abs = fs::absolute(state_dir).lexically_normal().string();
    char buf[PATH_MAX];
    real_state = ::realpath(abs.c_str(), buf) != nullptr ? std::string(buf) : abs;
  }
  for (std::size_t t = 0; t < files.size(); ++t) {
    for (const FileDecl& o : files[t].outputs) {
      if (is_glob(o.path)) {
        return ctx.err(*o.node, pepita::fmt("task '{}': output '{}' is a pattern; an output names "
                                            "one file",
                                            names[t], o.path));
      }
      const std::string abs = absolute_in(files[t].cwd, o.path);
      if (!state_dir.empty()) {
        const std::string state_abs = fs::absolute(state_dir).lexically_normal().string();
        if (!under(abs, state_abs) && !under(abs, real_state)) {
          return ctx.err(*o.node,
                         pepita::fmt("task '{}': output '{}' is {} outside the state directory "
                                     "'{}'; outputs are written under it (use a path relative to "
                                     "${state_dir})",
                                     names[t], o.path,
                                     o.path.find("..") != std::string::npos ? "(through '..')"
                                                                            : "(an absolute path)",
                                     state_dir));
        }
        const std::string real = resolved_location(abs);
        if (!under(real, real_state)) {
          return ctx.err(*o.node,
                         pepita::fmt("task '{}': output '{}' lands at '{}' through a symlink, "
                                     "outside the state directory '{}'; remove the link or "
                                     "write elsewhere under the state directory",
                                     names[t], o.path, real, state_dir));
        }
      }
      auto [it, added] = writer.try_emplace(abs, t, o.node);
      if (!added) {
        const std::size_t other = it->second.first;
        return ctx.err(*o.node,
                       pepita::fmt("tasks '{}' and '{}' both write output '{}' (first declared "
                                   "at {}); each output must have one writer",
                                   names[other], names[t], o.path,
                                   position(ctx.file(), it->second.second->source())));
      }
      files[t].resolved_outputs.push_back(abs);
    }
  }
  for (std::size_t t = 0; t < files.size(); ++t) {
    std::vector<std::string> found;
    auto depend = [&](const std::string& abs, const toml::node* node) -> Result<void> {
      auto w = writer.find(abs);
      if (w == writer.end()) return {};
      const std::size_t from = w->second.first;
      if (from == t) {
        return ctx.err(*node, pepita::fmt("task '{}' declares '{}' as both an input and an output",
                                          names[t], abs));
      }
      const bool known = std::any_of(deps[t].begin(), deps[t].end(),
                                     [&](const auto& d) { return d.first == from; });
      if (!known) deps[t].emplace_back(from, node);
      inferred.try_emplace({t, from}, abs);
      return {};
    };
    for (const FileDecl& in : files[t].inputs) {
      const std::string abs = absolute_in(files[t].cwd, in.path);
      if (!is_glob(in.path)) {
        if (!writer.contains(abs)) {
          struct stat st {};
          if (::stat(abs.c_str(), &st) != 0) {
            return ctx.err(*in.node,
                           pepita::fmt("task '{}': input '{}' does not exist ({}) and no task "
                                       "declares it as an output",
                                       names[t], in.path, abs));
          }
        }
        PEPITA_TRY_VOID(depend(abs, in.node));
        found.push_back(abs);
        continue;
      }
      // A glob: the files there now, and the outputs it names (written later in this run).
      std::vector<std::string> matches;
      glob_t g{};
      if (::glob(abs.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) {
          struct stat st {};
          if (::stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) {
            matches.emplace_back(fs::path(g.gl_pathv[i]).lexically_normal().string());
          }
        }
      }
      ::globfree(&g);
      for (const auto& [path, w] : writer) {
        if (::fnmatch(abs.c_str(), path.c_str(), FNM_PATHNAME) == 0) matches.push_back(path);
      }
      std::sort(matches.begin(), matches.end());
      matches.erase(std::unique(matches.begin(), matches.end()), matches.end());
      if (matches.empty()) {
        return ctx.err(*in.node, pepita::fmt("task '{}': input pattern '{}' matches no file ({}) "
                                             "and no task's output",
                                             names[t], in.path, abs));
      }
      for (const auto& m : matches) {
        PEPITA_TRY_VOID(depend(m, in.node));
        found.push_back(m);
      }
    }
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    files[t].resolved_inputs = std::move(found);
  }
  return {};
}

}  // namespace pepita::pool::detail
