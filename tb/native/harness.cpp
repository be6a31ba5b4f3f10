// Native Verilator testbench of the generated accelerator top level (microscopiq.tb.native builds
// and drives it; docs/verification.md says when to use it instead of the cocotb suite).
//
//   harness WEIGHTS ACT RESULTS --results N --max-cycles C
//           [--idle-weights P] [--idle-act P] [--backpressure P]
//
// WEIGHTS and ACT hold the s_axis_weights / s_axis_act beats, RESULTS receives the m_axis_result
// beats, all in one record format: the beat's tdata as ceil(width/32) little-endian 32-bit words
// (bit 0 first), then one 32-bit word holding tlast. The pause patterns P are "none",
// "cycle:BITS" (BITS repeated, 1 = pause) or "random:PROBABILITY:SEED", drawn once per cycle from
// Python's own random.Random(SEED).random() (MT19937, init_by_array seeding, 53-bit doubles), so
// a seeded pattern pauses in the same cycles as the cocotb suite's (tb/accel_tb.py PAUSES).
//
// Stream behaviour is cocotbext-axi's: a source draws its pause bit every cycle and, when its beat
// was taken or none is offered, offers the next beat unless paused (a valid beat is never
// withdrawn); the sink's tready is the inverse of its pause bit. Cycles are rising edges; like the
// cocotb TB it reports the edges from the first weights handshake to the last result handshake,
// plus one (what host/stream_format.predict_cycles counts), after a 4-cycle synchronous reset.
//
// It ends when every result beat due has arrived and a drain window has passed (an extra result
// beat there is an error), or after --max-cycles edges (exit status 3: a stuck or malformed run
// never hangs). On success it prints one JSON line of statistics on stdout: the cycles so counted,
// every cycle simulated, and the wall-clock and CPU seconds of the simulation loop.
#include "Vtop.h"
#include "verilated.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace {

constexpr int EXIT_USAGE = 2;
constexpr int EXIT_TIMEOUT = 3;
constexpr int EXIT_PROTOCOL = 4;
constexpr uint64_t RESET_CYCLES = 4;
constexpr uint64_t SETTLE_CYCLES = 2;
// Cycles every stream stays idle after the last result beat due: a beat arriving in it is extra.
constexpr uint64_t DRAIN_CYCLES = 50;

[[noreturn]] void fail(int status, const std::string& message) {
    std::fprintf(stderr, "harness: %s\n", message.c_str());
    std::exit(status);
}

// -- Python's random.Random ----------------------------------------------------------------------
class PyRandom {
  public:
    explicit PyRandom(uint64_t seed) {
        // random.seed(int): the 32-bit words of |seed|, least significant first (at least one).
        uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
        init_by_array(key, key[1] ? 2 : 1);
    }
    double random() {  // genrand_res53
        const uint32_t a = next() >> 5, b = next() >> 6;
        return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
    }

  private:
    static constexpr int N = 624, M = 397;
    uint32_t mt_[N];
    int index_ = N + 1;

    void init_genrand(uint32_t s) {
        mt_[0] = s;
        for (index_ = 1; index_ < N; index_++)
            mt_[index_] = 1812433253U * (mt_[index_ - 1] ^ (mt_[index_ - 1] >> 30)) + index_;
    }
    void init_by_array(const uint32_t* key, int length) {
        init_genrand(19650218U);
        int i = 1, j = 0;
        for (int k = N > length ? N : length; k; k--) {
            mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] + j;
            i++, j++;
            if (i >= N) mt_[0] = mt_[N - 1], i = 1;
            if (j >= length) j = 0;
        }
        for (int k = N - 1; k; k--) {
            mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) - i;
            if (++i >= N) mt_[0] = mt_[N - 1], i = 1;
        }
        mt_[0] = 0x80000000U;
    }
    uint32_t next() {
        static const uint32_t mag01[2] = {0, 0x9908b0dfU};
        if (index_ >= N) {
            int k = 0;
            for (; k < N - M; k++) {
                const uint32_t y = (mt_[k] & 0x80000000U) | (mt_[k + 1] & 0x7fffffffU);
                mt_[k] = mt_[k + M] ^ (y >> 1) ^ mag01[y & 1];
            }
            for (; k < N - 1; k++) {
                const uint32_t y = (mt_[k] & 0x80000000U) | (mt_[k + 1] & 0x7fffffffU);
                mt_[k] = mt_[k + (M - N)] ^ (y >> 1) ^ mag01[y & 1];
            }
            const uint32_t y = (mt_[N - 1] & 0x80000000U) | (mt_[0] & 0x7fffffffU);
            mt_[N - 1] = mt_[M - 1] ^ (y >> 1) ^ mag01[y & 1];
            index_ = 0;
        }
        uint32_t y = mt_[index_++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        return y ^ (y >> 18);
    }
};

// -- pause patterns ------------------------------------------------------------------------------
class Pauses {
  public:
    explicit Pauses(const std::string& spec) {
        if (spec == "none") return;
        if (spec.rfind("cycle:", 0) == 0 && spec.size() > 6) {
            for (char c : spec.substr(6)) {
                if (c != '0' && c != '1') fail(EXIT_USAGE, "bad pause pattern " + spec);
                cycle_.push_back(c == '1');
            }
            return;
        }
        double probability;
        unsigned long long seed;
        char tail;
        if (std::sscanf(spec.c_str(), "random:%lf:%llu%c", &probability, &seed, &tail) != 2)
            fail(EXIT_USAGE, "pause pattern must be none, cycle:BITS or random:P:SEED, not " + spec);
        probability_ = probability;
        random_ = std::make_unique<PyRandom>(seed);
    }
    bool next() {
        if (random_) return random_->random() < probability_;
        if (cycle_.empty()) return false;
        const bool pause = cycle_[position_];
        position_ = (position_ + 1) % cycle_.size();
        return pause;
    }

  private:
    std::vector<bool> cycle_;
    size_t position_ = 0;
    double probability_ = 0;
    std::unique_ptr<PyRandom> random_;
};

// -- ports of any width ---------------------------------------------------------------------------
template <typename T>
constexpr size_t words_of(const T&) { return sizeof(T) <= 4 ? 1 : 2; }
template <size_t N>
constexpr size_t words_of(const VlWide<N>&) { return N; }

template <typename T>
void put(T& port, const uint32_t* words) {
    uint64_t value = words[0];
    if (sizeof(T) > 4) value |= static_cast<uint64_t>(words[1]) << 32;
    port = static_cast<T>(value);
}
template <size_t N>
void put(VlWide<N>& port, const uint32_t* words) {
    for (size_t i = 0; i < N; i++) port[i] = words[i];
}
template <typename T>
void get(const T& port, uint32_t* words) {
    const uint64_t value = port;
    words[0] = static_cast<uint32_t>(value);
    if (sizeof(T) > 4) words[1] = static_cast<uint32_t>(value >> 32);
}
template <size_t N>
void get(const VlWide<N>& port, uint32_t* words) {
    for (size_t i = 0; i < N; i++) words[i] = port[i];
}

std::vector<uint32_t> read_records(const char* path, size_t record_words) {
    FILE* file = std::fopen(path, "rb");
    if (!file) fail(EXIT_USAGE, std::string("cannot open ") + path);
    // Read bytes, not words: a file whose length is not a whole number of records (a stray 1 to 3
    // bytes included) is refused instead of losing its tail.
    std::vector<unsigned char> bytes;
    unsigned char buffer[16384];
    size_t count;
    while ((count = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + count);
    std::fclose(file);
    if (bytes.size() % (record_words * 4))
        fail(EXIT_USAGE, std::string(path) + " is not a whole number of " +
                             std::to_string(record_words * 4) + "-byte beat records");
    std::vector<uint32_t> words(bytes.size() / 4);
    std::memcpy(words.data(), bytes.data(), bytes.size());
    return words;
}

// One AXI4-Stream source driving tdata/tvalid/tlast of a top-level port.
template <typename Data>
class Source {
  public:
    Source(const char* name, const char* path, Data& tdata, CData& tvalid, CData& tlast,
           const std::string& pauses)
        : name_(name), tdata_(tdata), tvalid_(tvalid), tlast_(tlast), pauses_(pauses),
          record_(words_of(tdata) + 1), words_(read_records(path, record_)) {}
    size_t beats() const { return words_.size() / record_; }
    size_t sent() const { return next_; }
    const char* name() const { return name_; }
    // After a rising edge on which the beat on offer was (or was not) taken.
    void after_edge(bool handshake) {
        if (handshake) next_++;
        const bool pause = pauses_.next();
        if (tvalid_ && !handshake) return;  // a valid beat stays until it is taken
        if (!pause && next_ < beats()) {
            const uint32_t* record = &words_[next_ * record_];
            put(tdata_, record);
            tlast_ = record[record_ - 1] & 1;
            tvalid_ = 1;
        } else {
            tvalid_ = 0;
        }
    }

  private:
    const char* name_;
    Data& tdata_;
    CData& tvalid_;
    CData& tlast_;
    Pauses pauses_;
    size_t record_;
    std::vector<uint32_t> words_;
    size_t next_ = 0;
};

struct Options {
    const char* weights = nullptr;
    const char* act = nullptr;
    const char* results = nullptr;
    uint64_t due = 0, max_cycles = 0;
    std::string idle_weights = "none", idle_act = "none", backpressure = "none";
};

// `harness --pauses P COUNT` prints COUNT draws of pattern P as 0/1 characters (the tests compare
// them with the cocotb suite's pause generators).
void print_pauses(int argc, char** argv) {
    if (argc != 4) fail(EXIT_USAGE, "usage: harness --pauses P COUNT");
    Pauses pauses(argv[2]);
    for (unsigned long long i = std::strtoull(argv[3], nullptr, 10); i; i--) std::putchar('0' + pauses.next());
    std::putchar('\n');
    std::exit(0);
}

Options parse(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "--pauses") print_pauses(argc, argv);
    Options options;
    std::vector<const char*> files;
    for (int i = 1; i < argc; i++) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail(EXIT_USAGE, arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--results") options.due = std::strtoull(value(), nullptr, 10);
        else if (arg == "--max-cycles") options.max_cycles = std::strtoull(value(), nullptr, 10);
        else if (arg == "--idle-weights") options.idle_weights = value();
        else if (arg == "--idle-act") options.idle_act = value();
        else if (arg == "--backpressure") options.backpressure = value();
        else if (arg.rfind("+verilator", 0) == 0) continue;
        else files.push_back(argv[i]);
    }
    if (files.size() != 3 || !options.due || !options.max_cycles)
        fail(EXIT_USAGE, "usage: harness WEIGHTS ACT RESULTS --results N --max-cycles C "
                         "[--idle-weights P] [--idle-act P] [--backpressure P]");
    options.weights = files[0], options.act = files[1], options.results = files[2];
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse(argc, argv);
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vtop>(context.get());

    Source weights("s_axis_weights", options.weights, top->s_axis_weights_tdata,
                   top->s_axis_weights_tvalid, top->s_axis_weights_tlast, options.idle_weights);
    Source act("s_axis_act", options.act, top->s_axis_act_tdata, top->s_axis_act_tvalid,
               top->s_axis_act_tlast, options.idle_act);
    Pauses sink_pauses(options.backpressure);
    const size_t result_record = words_of(top->m_axis_result_tdata) + 1;
    std::vector<uint32_t> results;
    results.reserve(options.due * result_record);

    // Synchronous reset, sources idle and the sink ready, as the cocotb TB does it.
    top->clk = 0;
    top->rst = 1;
    top->m_axis_result_tready = 1;
    top->eval();
    uint64_t cycle = 0;
    const auto edge = [&]() {
        top->clk = 1;
        top->eval();
        cycle++;
    };
    for (uint64_t i = 0; i < RESET_CYCLES; i++) {
        edge();
        top->clk = 0;
        top->eval();
    }
    top->rst = 0;
    top->eval();
    for (uint64_t i = 0; i < SETTLE_CYCLES; i++) {
        edge();
        top->clk = 0;
        top->eval();
    }

    const auto started = std::chrono::steady_clock::now();
    const std::clock_t cpu_started = std::clock();
    const uint64_t first_cycle = cycle;
    int64_t first_weights = -1, last_result = -1;
    uint64_t received = 0, done_at = 0;
    bool done = false;
    weights.after_edge(false);
    act.after_edge(false);
    top->m_axis_result_tready = !sink_pauses.next();
    top->eval();
    while (true) {
        if (cycle - first_cycle >= options.max_cycles) {
            char text[512];
            std::snprintf(text, sizeof text,
                          "timeout: %llu cycles simulated, %llu of %llu result beats, %zu of %zu "
                          "weight beats and %zu of %zu activation beats taken",
                          static_cast<unsigned long long>(cycle - first_cycle),
                          static_cast<unsigned long long>(received),
                          static_cast<unsigned long long>(options.due), weights.sent(), weights.beats(),
                          act.sent(), act.beats());
            fail(EXIT_TIMEOUT, text);
        }
        // Handshakes are sampled from the values the rising edge sees.
        const bool w_hs = top->s_axis_weights_tvalid && top->s_axis_weights_tready;
        const bool a_hs = top->s_axis_act_tvalid && top->s_axis_act_tready;
        const bool r_hs = top->m_axis_result_tvalid && top->m_axis_result_tready;
        if (r_hs) {
            results.resize(results.size() + result_record);
            uint32_t* record = &results[results.size() - result_record];
            get(top->m_axis_result_tdata, record);
            record[result_record - 1] = top->m_axis_result_tlast;
            received++;
        }
        edge();
        if (w_hs && first_weights < 0) first_weights = static_cast<int64_t>(cycle);
        if (r_hs) last_result = static_cast<int64_t>(cycle);
        if (received > options.due) {
            fail(EXIT_PROTOCOL, "result beat " + std::to_string(received) + " arrived, only " +
                                    std::to_string(options.due) + " are due");
        }
        if (!done && received == options.due) done = true, done_at = cycle;
        if (done && cycle - done_at >= DRAIN_CYCLES) break;
        weights.after_edge(w_hs);
        act.after_edge(a_hs);
        top->m_axis_result_tready = done ? 1 : !sink_pauses.next();
        top->clk = 0;
        top->eval();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double cpu_seconds = static_cast<double>(std::clock() - cpu_started) / CLOCKS_PER_SEC;
    const auto check_taken = [](const auto& source) {
        if (source.sent() != source.beats())
            fail(EXIT_PROTOCOL, std::string(source.name()) + ": " + std::to_string(source.sent()) +
                                    " of " + std::to_string(source.beats()) + " beats taken");
    };
    check_taken(weights);
    check_taken(act);

    FILE* out = std::fopen(options.results, "wb");
    if (!out || std::fwrite(results.data(), 4, results.size(), out) != results.size() || std::fclose(out))
        fail(EXIT_USAGE, std::string("cannot write ") + options.results);
    top->final();
    std::printf("{\"cycles\": %lld, \"first_weights\": %lld, \"last_result\": %lld, "
                "\"simulated_cycles\": %llu, \"seconds\": %.6f, \"cpu_seconds\": %.6f}\n",
                static_cast<long long>(last_result - first_weights + 1),
                static_cast<long long>(first_weights), static_cast<long long>(last_result),
                static_cast<unsigned long long>(cycle - first_cycle), seconds, cpu_seconds);
    return 0;
}
