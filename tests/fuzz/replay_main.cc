// Replay driver for the libFuzzer targets in builds without libFuzzer (g++, `make test`, the
// ASan/UBSan CI build): runs LLVMFuzzerTestOneInput once on every file under the folders (or
// files) given, in name order, so seed corpora and the reproducers of fixed bugs are regression
// tests everywhere. cmake/PepitaFuzz.cmake links it as <target>_replay.
//   fuzz_transport_frame_replay tests/transport/fuzz/corpus/fuzz_transport_frame
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      for (const auto& e : fs::recursive_directory_iterator(arg)) {
        if (e.is_regular_file()) inputs.push_back(e.path());
      }
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a folder\n", argv[i]);
      return 2;
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s <corpus folder or file>...; no inputs found\n", argv[0]);
    return 2;
  }
  std::sort(inputs.begin(), inputs.end());
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    // A fresh heap copy of exactly `size` bytes, as libFuzzer passes it, so ASan sees overreads.
    std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());
    std::printf("replay: %s (%zu bytes)\n", path.c_str(), copy.size());
    std::fflush(stdout);
    (void)LLVMFuzzerTestOneInput(copy.data(), copy.size());
  }
  std::printf("replay: %zu inputs ran\n", inputs.size());
  return 0;
}
