// `pepita vm run` as a user runs it: a guest's output and exit code, a hostile guest's fault,
// a runaway guest's timeout, and bad arguments.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "cli_runner.hpp"
#include "common/require.hpp"
#include "common/vmlinux_image.hpp"

namespace pepita::test {
namespace {

std::string guest(const char* name) {
  return std::string(PEPITA_BINARY_DIR) + "/guest/" + name + ".elf";
}

std::string input_file(const std::string& bytes) {
  static int counter = 0;
  const auto path =
      std::filesystem::temp_directory_path() /
      ("pepita-vm-input-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

TEST(CliVm, HelloGuestPrintsAndExitsZero) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  CliRun run = run_pepita("vm run " + guest("hello") + " --mem 4M --timeout 5s");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  // Exactly the guest's line (guest/examples/hello.cpp), nothing from the VMM around it.
  EXPECT_EQ(run.output, "hello from a pepita micro-VM\n");

  CliRun json = run_pepita("vm run " + guest("hello") + " --mem 4M --timeout 5s --json");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const auto j = nlohmann::json::parse(json.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.output;
  EXPECT_EQ(j["kind"], "exited") << json.output;
  EXPECT_EQ(j["exit_code"], 0) << json.output;
  EXPECT_EQ(j["output"], "hello from a pepita micro-VM\n") << json.output;
  EXPECT_GE(j["exits"].get<std::uint64_t>(), 1u) << json.output;
}

TEST(CliVm, EscapeAttemptIsAReportedGuestFault) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  const std::string input = input_file("R");  // read at 1 TiB, outside guest memory
  CliRun run = run_pepita("vm run " + guest("escape") + " --mem 4M --timeout 5s --input " + input);
  std::filesystem::remove(input);
  EXPECT_EQ(run.exit_code, 125) << run.output;  // guest fault
  // A page fault at exactly the address the guest read: 1 TiB.
  EXPECT_NE(run.output.find("pepita vm run: guest fault: #PF page fault"), std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find(" cr2=0x10000000000 "), std::string::npos) << run.output;
}

TEST(CliVm, VirtioConsoleAndBlockDevicesFromTheCommandLine) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  const std::string disk = input_file(std::string("sector zero text") + std::string(4096, '\0'));
  const std::string input = input_file("over the console");
  CliRun run = run_pepita("vm run " + guest("virtio_io") +
                          " --mem 8M --timeout 10s --virtio-console --virtio-blk file:" + disk +
                          " --input " + input);
  std::filesystem::remove(input);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output,
            "virtio-console: hello from a kernel-less guest\n"
            "input: over the console\n"
            "virtio-blk: 8 sectors\n"
            "sector 0: sector zero text\n"
            "sector 1 written and verified\n");
  std::ifstream in(disk, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(disk);  // read back: the test leaves no files
  ASSERT_GE(bytes.size(), 1024u);
  for (int i = 0; i < 512; ++i) {
    ASSERT_EQ(static_cast<uint8_t>(bytes[512 + i]), static_cast<uint8_t>(i * 13 + 7)) << i;
  }
  CliRun mem = run_pepita("vm run " + guest("virtio_io") +
                          " --mem 8M --timeout 10s --virtio-console --virtio-blk mem:1M --json");
  EXPECT_EQ(mem.exit_code, 0) << mem.output;
  EXPECT_NE(mem.output.find("virtio-blk: 2048 sectors"), std::string::npos) << mem.output;
  EXPECT_NE(mem.output.find("\"mmio_exits\""), std::string::npos) << mem.output;
  for (const char* bad : {"mem:100", "mem:lots", "disk:x", "file:/nonexistent/disk.img"}) {
    CliRun r = run_pepita("vm run " + guest("virtio_io") + " --virtio-blk " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--virtio-blk"), std::string::npos) << r.output;
  }
}

TEST(CliVm, VcpusSplitsTheDotProductAndOutOfRangeIsAUsageError) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  // a = 1..8, b = 2 each: dot = 2 * 36 = 72, split over two vCPUs by guest/vm_examples/pdot.cpp.
  std::string bytes;
  for (int32_t v : {1, 2, 3, 4, 5, 6, 7, 8, 2, 2, 2, 2, 2, 2, 2, 2})
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  const std::string input = input_file(bytes);
  CliRun run = run_pepita("vm run " + guest("pdot") + " --vcpus 2 --timeout 5s --input " + input);
  std::filesystem::remove(input);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output, "dot 72 vcpus 2\n");
  for (const char* bad : {"0", "65"}) {
    CliRun r = run_pepita("vm run " + guest("hello") + " --vcpus " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--vcpus"), std::string::npos) << r.output;
  }
}

TEST(CliVm, BadMemoryValueIsAUsageError) {
  CliRun run = run_pepita("vm run " + guest("hello") + " --mem lots");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("--mem"), std::string::npos) << run.output;
}

TEST(CliVm, MissingGuestFileFailsClearly) {
  CliRun run = run_pepita("vm run /nonexistent/guest.elf");
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("open guest image /nonexistent/guest.elf: No such file"),
            std::string::npos)
      << run.output;
}

TEST(CliVm, NonElfGuestIsRejected) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  const std::string bogus = input_file("this is not an ELF file");
  CliRun run = run_pepita("vm run " + bogus);
  std::filesystem::remove(bogus);
  EXPECT_EQ(run.exit_code, 1) << run.output;  // refused before any VM runs: not a guest fault
  EXPECT_NE(run.output.find(bogus + ": guest ELF image:"), std::string::npos) << run.output;
}

TEST(CliVm, MalformedOrTooLongTimeoutIsAUsageError) {
  for (const char* bad : {"5x", "2h", "61m", "0", "soon"}) {
    CliRun r = run_pepita("vm run " + guest("hello") + " --timeout " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find(std::string("--timeout '") + bad +
                            "': expected e.g. 1s, 250ms or 2m (at most 1h)"),
              std::string::npos)
        << r.output;
  }
}

TEST(CliVm, ReservedVsockCidIsAUsageError) {
  for (const char* bad : {"0", "2", "4294967295"}) {
    CliRun r = run_pepita("vm run " + guest("hello") + " --vsock-cid " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--vsock-cid: the guest's context id must be 3..4294967294"),
              std::string::npos)
        << r.output;
  }
}

TEST(CliVm, MissingInputFileFailsBeforeAnyVmRuns) {
  CliRun r = run_pepita("vm run " + guest("hello") + " --input /nonexistent/input.bin");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita vm run: cannot open --input /nonexistent/input.bin: No such "
                          "file"),
            std::string::npos)
      << r.output;
}

TEST(CliVm, ADiskThatCannotBeCreatedFailsAndLeavesNothing) {
  ScratchDir dir;
  // A valid spec whose file cannot be created: its directory is missing.
  const std::string disk = dir / "missing-dir/disk.img";
  CliRun r = run_pepita("vm run " + guest("virtio_io") + " --virtio-blk file:" + disk + ",1M");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita vm run: --virtio-blk file:" + disk + ",1M: "), std::string::npos)
      << r.output;
  EXPECT_TRUE(dir.entries().empty());
}

TEST(CliVm, KernelAndGuestTogetherIsAUsageError) {
  CliRun r = run_pepita("vm run " + guest("hello") + " --kernel /nonexistent/vmlinux");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("give either GUEST.elf or --kernel, not both"), std::string::npos)
      << r.output;
}

TEST(CliVm, MissingKernelFailsNamingItWhateverTheTimeoutUnit) {
  for (const char* timeout : {"250ms", "100us", "2m", "3"}) {
    CliRun r = run_pepita(std::string("vm run --kernel /nonexistent/vmlinux --timeout ") + timeout);
    EXPECT_EQ(r.exit_code, 1) << timeout << ": " << r.output;
    EXPECT_NE(r.output.find("pepita vm run: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("open kernel /nonexistent/vmlinux"), std::string::npos) << r.output;
  }
}

// A vmlinux-like ELF whose entry (physical 0x1000040) runs `code` at CPL0.
std::string kernel_file(const ScratchDir& dir, std::initializer_list<uint8_t> code) {
  return write_synthetic_vmlinux(dir / "vmlinux", std::span(code.begin(), code.size()));
}

TEST(CliVm, KernelConsoleIsPrintedAndATripleFaultIsAGuestFault) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  ScratchDir dir;
  // mov dx, 0x3f8; mov al, 'K'; out dx, al; mov al, '\n'; out dx, al;
  // lidt [0x1000200] (limit 0); ud2: #UD through an empty IDT is a triple fault.
  const std::string kernel =
      kernel_file(dir, {0x66, 0xba, 0xf8, 0x03, 0xb0, 'K',  0xee, 0xb0, 0x0a, 0xee,
                        0x0f, 0x01, 0x1c, 0x25, 0x00, 0x02, 0x00, 0x01, 0x0f, 0x0b});
  CliRun r = run_pepita("vm run --kernel " + kernel + " --mem 64M --timeout 30s");
  EXPECT_EQ(r.exit_code, 125) << r.output;
  EXPECT_EQ(r.output.rfind("K\n", 0), 0u) << r.output;  // the console first, as it arrived
  EXPECT_NE(r.output.find("pepita vm run: kernel "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("triple fault"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(last rip=0x"), std::string::npos) << r.output;

  CliRun json = run_pepita("vm run --kernel " + kernel + " --mem 64M --timeout 30s --json");
  EXPECT_EQ(json.exit_code, 125) << json.output;
  const auto j = nlohmann::json::parse(json.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.output;
  EXPECT_EQ(j["kind"], "fault") << json.output;
  EXPECT_EQ(j["output"], "K\n") << json.output;
  ASSERT_TRUE(j.contains("fault")) << json.output;
  EXPECT_NE(j["fault"]["reason"].get<std::string>().find("triple fault"), std::string::npos)
      << json.output;
  EXPECT_TRUE(j["fault"].contains("rip") && j["fault"].contains("cr2")) << json.output;
}

TEST(CliVm, SpinningKernelTimesOutWithExitCode124) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  ScratchDir dir;
  const std::string kernel = kernel_file(dir, {0xeb, 0xfe});  // jmp $
  CliRun r = run_pepita("vm run --kernel " + kernel + " --mem 64M --timeout 300ms --json");
  EXPECT_EQ(r.exit_code, 124) << r.output;
  const auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["kind"], "timed-out") << r.output;
  EXPECT_EQ(j["fault"]["rip"], 0x1000040u) << r.output;  // where the kernel was stopped
}

TEST(CliVm, AVsockSocketThatCannotBeCreatedFailsNamingIt) {
  PEPITA_REQUIRE_CAPABILITY(kvm);
  ScratchDir dir;
  const std::string sock = dir / "missing-dir/v.sock";
  CliRun r = run_pepita("vm run " + guest("hello") + " --mem 4M --timeout 5s --vsock " + sock);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita vm run: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("VmConfig::vsock_path"), std::string::npos) << r.output;
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace pepita::test
