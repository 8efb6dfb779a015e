// The server of tests/executor/serve_test.cpp: speaks the serve executor's frames on fd 3
// (executor/serve.hpp). Each request is a word: "pid" answers its pid, "crash" exits with status
// 7, "segv" raises SIGSEGV, "sleep" sleeps 60 s, "big" answers 4096 bytes, "print:<text>" writes
// <text> to stderr and answers "printed"; anything else is echoed. argv[1] must be "--serve"
// (what the executor appends to a task's argv); it exits at end of file.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

bool read_exact(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t got = ::read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

bool write_frame(int fd, const std::string& body) {
  unsigned char head[8];
  const std::uint64_t len = body.size();
  for (int i = 0; i < 8; ++i) head[i] = static_cast<unsigned char>(len >> (8 * i));
  std::string out(reinterpret_cast<const char*>(head), 8);  // SAFETY: 8 plain bytes
  out += body;
  return ::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--serve") != 0) {
    std::fputs("serve_echo: run me with --serve 3\n", stderr);
    return 2;
  }
  for (;;) {
    unsigned char head[8];
    if (!read_exact(3, head, 8)) return 0;
    std::uint64_t len = 0;
    for (int i = 0; i < 8; ++i) len |= std::uint64_t{head[i]} << (8 * i);
    std::string req(len, '\0');
    if (!read_exact(3, req.data(), len)) return 0;
    std::string reply = req;
    if (req == "pid") {
      reply = std::to_string(::getpid());
    } else if (req == "crash") {
      ::_exit(7);
    } else if (req == "segv") {
      ::raise(SIGSEGV);
    } else if (req == "sleep") {
      ::sleep(60);
    } else if (req == "big") {
      reply.assign(4096, 'x');
    } else if (req.starts_with("print:")) {
      std::fputs(req.c_str() + 6, stderr);
      std::fflush(stderr);
      reply = "printed";
    }
    if (!write_frame(3, reply)) return 1;
  }
}
