// pepita-wordcount: the worker program of the bundled map/reduce word-count job
// (examples/wordcount/job.toml). Three steps, each a separate process run by `pepita run`:
//   generate --shard I --words N --seed S --out FILE   write a synthetic English-like corpus shard
//                                                      (Zipf-distributed words, s = 1.07)
//   count IN OUT                                       count the words of one shard (the map)
//   reduce --top K --shards N PREFIX OUT               merge PREFIX-<i>.tsv, print the top K
// Deterministic for a given seed, so the job's output is reproducible.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::array<std::string_view, 263> kWords = {
    "the",     "of",       "and",      "to",     "a",       "in",       "is",      "it",
    "you",     "that",     "he",       "was",    "for",     "on",       "are",     "with",
    "as",      "his",      "they",     "be",     "at",      "one",      "have",    "this",
    "from",    "or",       "had",      "by",     "hot",     "word",     "but",     "what",
    "some",    "we",       "can",      "out",    "other",   "were",     "all",     "there",
    "when",    "up",       "use",      "your",   "how",     "said",     "an",      "each",
    "she",     "which",    "do",       "their",  "time",    "if",       "will",    "way",
    "about",   "many",     "then",     "them",   "write",   "would",    "like",    "so",
    "these",   "her",      "long",     "make",   "thing",   "see",      "him",     "two",
    "has",     "look",     "more",     "day",    "could",   "go",       "come",    "did",
    "number",  "sound",    "no",       "most",   "people",  "my",       "over",    "know",
    "water",   "than",     "call",     "first",  "who",     "may",      "down",    "side",
    "been",    "now",      "find",     "any",    "new",     "work",     "part",    "take",
    "get",     "place",    "made",     "live",   "where",   "after",    "back",    "little",
    "only",    "round",    "man",      "year",   "came",    "show",     "every",   "good",
    "me",      "give",     "our",      "under",  "name",    "very",     "through", "just",
    "form",    "sentence", "great",    "think",  "say",     "help",     "low",     "line",
    "differ",  "turn",     "cause",    "much",   "mean",    "before",   "move",    "right",
    "boy",     "old",      "too",      "same",   "tell",    "does",     "set",     "three",
    "want",    "air",      "well",     "also",   "play",    "small",    "end",     "put",
    "home",    "read",     "hand",     "port",   "large",   "spell",    "add",     "even",
    "land",    "here",     "must",     "big",    "high",    "such",     "follow",  "act",
    "why",     "ask",      "men",      "change", "went",    "light",    "kind",    "off",
    "need",    "house",    "picture",  "try",    "us",      "again",    "animal",  "point",
    "mother",  "world",    "near",     "build",  "self",    "earth",    "father",  "head",
    "stand",   "own",      "page",     "should", "country", "found",    "answer",  "school",
    "grow",    "study",    "still",    "learn",  "plant",   "cover",    "food",    "sun",
    "four",    "between",  "state",    "keep",   "eye",     "never",    "last",    "let",
    "thought", "city",     "tree",     "cross",  "farm",    "hard",     "start",   "might",
    "story",   "saw",      "far",      "sea",    "draw",    "left",     "late",    "run",
    "while",   "press",    "close",    "night",  "real",    "life",     "few",     "north",
    "open",    "seem",     "together", "next",   "white",   "children", "begin",   "got",
    "walk",    "example",  "ease",     "paper",  "group",   "always",   "music"};

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int usage() {
  std::fputs(
      "usage: pepita-wordcount generate --shard I --words N --seed S --out FILE\n"
      "       pepita-wordcount count IN OUT\n"
      "       pepita-wordcount reduce --top K --shards N PREFIX OUT\n",
      stderr);
  return 2;
}

bool parse_u64(const char* s, std::uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (errno || !end || *end || end == s) return false;
  out = v;
  return true;
}

int generate(int argc, char** argv) {
  std::uint64_t shard = 0, words = 0, seed = 1;
  std::string out;
  for (int i = 0; i + 1 < argc; i += 2) {
    const std::string_view k = argv[i];
    if (k == "--shard" && parse_u64(argv[i + 1], shard)) continue;
    if (k == "--words" && parse_u64(argv[i + 1], words)) continue;
    if (k == "--seed" && parse_u64(argv[i + 1], seed)) continue;
    if (k == "--out") {
      out = argv[i + 1];
      continue;
    }
    return usage();
  }
  if (out.empty() || words == 0) return usage();
  // Zipf CDF over the vocabulary: word k has weight 1 / (k+1)^1.07, like natural text.
  std::vector<double> cdf(kWords.size());
  double sum = 0;
  for (std::size_t k = 0; k < kWords.size(); ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k + 1), 1.07);
    cdf[k] = sum;
  }
  std::uint64_t state = seed * 0x100000001b3ULL + shard;
  std::string text;
  text.reserve(words * 6);
  std::uint64_t in_sentence = 0, sentence_len = 8;
  for (std::uint64_t w = 0; w < words; ++w) {
    const double u = static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53 * sum;
    const auto k =
        static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    std::string_view word = kWords[std::min(k, kWords.size() - 1)];
    if (in_sentence == 0) {
      text.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(word[0]))));
      text.append(word.substr(1));
      sentence_len = 5 + splitmix(state) % 12;
    } else {
      text.append(word);
    }
    if (++in_sentence == sentence_len) {
      text.append(".\n");
      in_sentence = 0;
    } else {
      text.push_back(splitmix(state) % 9 == 0 ? ',' : ' ');
      if (text.back() == ',') text.push_back(' ');
    }
  }
  text.push_back('\n');
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!f) {
    std::fprintf(stderr, "generate: cannot write %s: %s\n", out.c_str(), std::strerror(errno));
    return 1;
  }
  std::printf("shard %llu: %llu words, %zu bytes\n", static_cast<unsigned long long>(shard),
              static_cast<unsigned long long>(words), text.size());
  return 0;
}

int count(int argc, char** argv) {
  if (argc != 2) return usage();
  std::ifstream in(argv[0], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "count: cannot read %s: %s\n", argv[0], std::strerror(errno));
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  std::unordered_map<std::string, std::uint64_t> counts;
  std::string word;
  std::uint64_t total = 0;
  for (char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (!word.empty()) {
      ++counts[word];
      ++total;
      word.clear();
    }
  }
  if (!word.empty()) ++counts[word], ++total;
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  for (const auto& [w, n] : counts) out << w << '\t' << n << '\n';
  if (!out) {
    std::fprintf(stderr, "count: cannot write %s\n", argv[1]);
    return 1;
  }
  std::printf("%s: %llu words, %zu distinct\n", argv[0], static_cast<unsigned long long>(total),
              counts.size());
  return 0;
}

int reduce(int argc, char** argv) {
  std::uint64_t top = 10, shards = 0;
  int i = 0;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    const std::string_view k = argv[i];
    if (k == "--top" && parse_u64(argv[i + 1], top)) continue;
    if (k == "--shards" && parse_u64(argv[i + 1], shards)) continue;
    return usage();
  }
  if (argc - i != 2 || shards == 0) return usage();
  const std::string prefix = argv[i], out_path = argv[i + 1];
  std::unordered_map<std::string, std::uint64_t> counts;
  for (std::uint64_t s = 0; s < shards; ++s) {
    const std::string path = prefix + "-" + std::to_string(s) + ".tsv";
    std::ifstream in(path);
    if (!in) {
      std::fprintf(stderr, "reduce: cannot read %s: %s\n", path.c_str(), std::strerror(errno));
      return 1;
    }
    std::string w;
    std::uint64_t n;
    while (in >> w >> n) counts[w] += n;
  }
  std::vector<std::pair<std::string, std::uint64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  std::uint64_t total = 0;
  for (const auto& [w, n] : sorted) total += n;
  std::ofstream out(out_path, std::ios::trunc);
  for (const auto& [w, n] : sorted) out << w << '\t' << n << '\n';
  std::printf("%llu words in %llu shards, %zu distinct; top %llu:\n",
              static_cast<unsigned long long>(total), static_cast<unsigned long long>(shards),
              sorted.size(), static_cast<unsigned long long>(top));
  for (std::size_t k = 0; k < sorted.size() && k < top; ++k) {
    std::printf("%3zu. %-10s %10llu  %5.2f%%\n", k + 1, sorted[k].first.c_str(),
                static_cast<unsigned long long>(sorted[k].second),
                100.0 * static_cast<double>(sorted[k].second) / static_cast<double>(total));
  }
  std::printf("full table: %s\n", out_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string_view cmd = argv[1];
  if (cmd == "generate") return generate(argc - 2, argv + 2);
  if (cmd == "count") return count(argc - 2, argv + 2);
  if (cmd == "reduce") return reduce(argc - 2, argv + 2);
  return usage();
}
