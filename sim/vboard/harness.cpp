// plasticore virtual board: a Verilated SoC reached over a pseudo-terminal.
//
// The host opens the pseudo-terminal with pyserial exactly as it would open a USB-UART bridge.
// Every byte it writes is serialised 8N1 (start bit, 8 data bits LSB first, stop bit) onto the
// design's `uart_rx` input at a fixed number of clock cycles per bit; the design's `uart_tx`
// output is sampled mid-bit, and every well-framed byte is written back to the host. So the same
// protocol bits cross the same UART as on a real board, only the clock is simulated.
//
// Built by plasticore.sim.vboard.build_virtual_board() with
//     verilator --cc --exe --build --prefix <VBOARD_MODEL> -CFLAGS -DVBOARD_MODEL=<...> ...
// The top level must have the ports clk, rst (synchronous, active high), uart_rx (in), uart_tx
// (out): what amaranth.back.verilog.convert produces for a component with `uart_rx: In(1)` and
// `uart_tx: Out(1)` that uses the default `sync` domain without defining it.
//
// Protocol with the parent process:
//   * stdout: exactly one line, "PTY <slave path>", then nothing more (a parent that stops
//     reading stdout must never block us): stdout is then redirected to stderr, so the
//     design's $display output lands there.
//   * stderr: diagnostics, one "VBOARD stats ..." line per SIGUSR1 (and per --stats-interval),
//     and a final "VBOARD exit reason=... cycles=... bytes_in=... ..." line.
//   * stdin: watched for end-of-file. A parent that starts us with a pipe on stdin and dies
//     closes it, and we exit instead of running forever (disable with --no-stdin-watch).
//   * SIGTERM, SIGINT, SIGHUP: exit cleanly (stats printed, exit code 0); so does $finish.
//   * --lockstep NOTICE_FD,GO_FD (optional): two pipes that stop the clock while the host
//     reacts, so cycle counts do not depend on the host's speed. Whenever we have handed bytes
//     to the pty, we write their count (u64, native byte order) to NOTICE_FD and wait, the
//     clock stopped, until the host writes to GO_FD the total of bytes it has ever written to
//     the pty (u64): it does so once it has read those bytes, reacted to them and has nothing
//     left to do. We then read the pty until we have that many bytes from the host (its
//     reaction, so it reaches the design at the cycle the host saw our bytes) and run on.
//     Signals are served while we wait; end-of-file or an error on either pipe ends lockstep.
//
// Pseudo-terminal semantics handled here:
//   * The slave side is set raw (cfmakeraw) before the path is printed: otherwise the default
//     line discipline echoes the design's output back into the design and cooks CR/LF.
//   * We keep a slave descriptor open, so the host closing (and reopening) the port never makes
//     reads of the master fail with EIO, and the terminal settings survive.
//   * The master runs in packet mode (TIOCPKT), so a host-side tcflush() is visible: when the
//     host discards its input (pyserial does on open() and reset_input_buffer()) we also discard
//     the output still queued here; when it discards its output (reset_output_buffer()) we drop
//     the bytes not yet serialised. That is what a USB-UART bridge does.
//   * Writes to the master that would block (EAGAIN: the host is not reading) are buffered
//     here, never dropped.

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "verilated.h"

#ifndef VBOARD_MODEL
#define VBOARD_MODEL Vvboard
#endif
#ifndef VBOARD_DEFAULT_DIVISOR
#define VBOARD_DEFAULT_DIVISOR 16
#endif
#define VBOARD_STR2(x) #x
#define VBOARD_STR(x) VBOARD_STR2(x)
#include VBOARD_STR(VBOARD_MODEL.h)

// Verilator's runtime asks for the simulation time when the design calls $time and friends.
double sc_time_stamp() { return 0; }

namespace {

volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_stats_requested = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
extern "C" void on_stats_signal(int) { g_stats_requested = 1; }

struct Options {
    uint32_t divisor = VBOARD_DEFAULT_DIVISOR;
    uint32_t reset_cycles = 16;
    uint64_t max_cycles = 0;        // 0: forever
    uint32_t poll_interval = 512;   // cycles between looks at the pty
    uint64_t idle_cycles = 1ull << 26;  // 0: never throttle
    uint32_t idle_sleep_us = 1000;
    double stats_interval = 0;      // seconds; 0: off
    std::string pty_file;
    bool watch_stdin = true;
    int notice_fd = -1;  // --lockstep: -1 when off
    int go_fd = -1;
};

void usage(const char* argv0) {
    std::fprintf(stderr,
        "usage: %s [options]\n"
        "  --divisor N         clock cycles per UART bit (default %u, at least 2)\n"
        "  --reset-cycles N    cycles rst is held high at start (default 16)\n"
        "  --max-cycles N      exit after N simulated cycles (default: run forever)\n"
        "  --poll-interval N   cycles between pty polls while busy (default 512)\n"
        "  --idle-cycles N     after N cycles with both UART lines idle and nothing queued,\n"
        "                      sleep up to --idle-sleep-us per poll until a byte arrives or the\n"
        "                      design transmits (default 67108864; 0 disables throttling)\n"
        "  --idle-sleep-us N   sleep per poll while idle (default 1000)\n"
        "  --stats-interval S  print a stats line on stderr every S seconds of wall time\n"
        "  --pty-file PATH     also write the pty path to PATH (atomically)\n"
        "  --no-stdin-watch    do not exit when stdin reaches end-of-file\n"
        "  --lockstep N,G      stop the clock after handing bytes to the host until it says\n"
        "                      go: the byte count goes to fd N, the go comes from fd G\n"
        "SIGUSR1 prints a stats line; SIGTERM/SIGINT/SIGHUP exit cleanly.\n",
        argv0, (unsigned)VBOARD_DEFAULT_DIVISOR);
}

bool parse_u64(const char* text, uint64_t& out) {
    if (!text || !*text) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long value = std::strtoull(text, &end, 0);
    if (errno || *end || text[0] == '-') return false;
    out = value;
    return true;
}

bool parse_options(int argc, char** argv, Options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.rfind("+", 0) == 0) continue;  // +verilator+... plusargs, for the runtime
        auto value = [&](uint64_t& out) {
            if (i + 1 >= argc || !parse_u64(argv[i + 1], out)) {
                std::fprintf(stderr, "vboard: %s needs a non-negative integer\n", arg.c_str());
                return false;
            }
            ++i;
            return true;
        };
        uint64_t v = 0;
        if (arg == "--divisor") {
            if (!value(v)) return false;
            if (v < 2 || v > 0xffffffu) {
                std::fprintf(stderr, "vboard: --divisor must be between 2 and 16777215\n");
                return false;
            }
            o.divisor = (uint32_t)v;
        } else if (arg == "--reset-cycles") {
            if (!value(v)) return false;
            o.reset_cycles = (uint32_t)v;
        } else if (arg == "--max-cycles") {
            if (!value(v)) return false;
            o.max_cycles = v;
        } else if (arg == "--poll-interval") {
            if (!value(v)) return false;
            if (v < 1 || v > 1000000) {
                std::fprintf(stderr, "vboard: --poll-interval must be between 1 and 1000000\n");
                return false;
            }
            o.poll_interval = (uint32_t)v;
        } else if (arg == "--idle-cycles") {
            if (!value(v)) return false;
            o.idle_cycles = v;
        } else if (arg == "--idle-sleep-us") {
            if (!value(v)) return false;
            o.idle_sleep_us = (uint32_t)(v > 1000000 ? 1000000 : v);
        } else if (arg == "--stats-interval") {
            if (i + 1 >= argc) return false;
            o.stats_interval = std::atof(argv[++i]);
        } else if (arg == "--pty-file") {
            if (i + 1 >= argc) return false;
            o.pty_file = argv[++i];
        } else if (arg == "--no-stdin-watch") {
            o.watch_stdin = false;
        } else if (arg == "--lockstep") {
            int notice = -1, go = -1;
            char tail = 0;
            if (i + 1 >= argc ||
                std::sscanf(argv[i + 1], "%d,%d%c", &notice, &go, &tail) != 2 || notice < 0 ||
                go < 0 || fcntl(notice, F_GETFD) < 0 || fcntl(go, F_GETFD) < 0) {
                std::fprintf(stderr, "vboard: --lockstep needs two open file descriptors N,G\n");
                return false;
            }
            ++i;
            o.notice_fd = notice;
            o.go_fd = go;
        } else if (arg == "--help" || arg == "-h") {
            usage(argv[0]);
            std::exit(0);
        } else {
            std::fprintf(stderr, "vboard: unknown argument %s\n", arg.c_str());
            usage(argv[0]);
            return false;
        }
    }
    return true;
}

double now_seconds() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// A byte queue with cheap pops from the front.
struct ByteQueue {
    std::vector<uint8_t> data;
    size_t head = 0;
    size_t size() const { return data.size() - head; }
    bool empty() const { return head == data.size(); }
    const uint8_t* front() const { return data.data() + head; }
    void push(const uint8_t* bytes, size_t n) { data.insert(data.end(), bytes, bytes + n); }
    void push(uint8_t byte) { data.push_back(byte); }
    uint8_t pop() { return data[head++]; }
    void consume(size_t n) {
        head += n;
        if (head == data.size()) clear();
    }
    void clear() {
        data.clear();
        head = 0;
    }
    void compact() {
        if (head > 65536 && head * 2 > data.size()) {
            data.erase(data.begin(), data.begin() + (ptrdiff_t)head);
            head = 0;
        }
    }
};

class Board {
  public:
    Board(const Options& options, VerilatedContext* context, VBOARD_MODEL* top, int master)
        : o_(options), ctx_(context), top_(top), master_(master), half_(options.divisor / 2) {}

    int run();

  private:
    enum TxState : uint8_t { TX_WAIT_HIGH, TX_IDLE, TX_BITS };

    void cycle() {
        top_->uart_rx = rx_line_;
        top_->clk = 0;
        top_->eval();
        ctx_->timeInc(1);
        top_->clk = 1;
        top_->eval();
        ctx_->timeInc(1);
        ++cycles_;
        sample_tx(top_->uart_tx & 1);
        advance_rx();
    }

    // Design -> host: find the start bit, sample every bit in its middle, check the stop bit.
    void sample_tx(uint8_t tx) {
        switch (tx_state_) {
        case TX_WAIT_HIGH:  // after reset or a framing error: wait for the line to idle high
            if (tx) tx_state_ = TX_IDLE;
            break;
        case TX_IDLE:
            if (!tx) {
                tx_state_ = TX_BITS;
                tx_count_ = half_ - 1;
                tx_bit_ = -1;
                last_activity_ = cycles_;
            }
            break;
        case TX_BITS:
            if (tx_count_) {
                --tx_count_;
                break;
            }
            tx_count_ = o_.divisor - 1;
            if (tx_bit_ < 0) {
                if (tx) {  // the start bit did not last half a bit: a glitch, not a byte
                    ++glitches_;
                    tx_state_ = TX_IDLE;
                } else {
                    tx_bit_ = 0;
                    tx_shift_ = 0;
                }
            } else if (tx_bit_ < 8) {
                tx_shift_ |= (uint8_t)(tx << tx_bit_);
                ++tx_bit_;
            } else {
                if (tx) {
                    out_.push(tx_shift_);
                    ++bytes_out_;
                    tx_state_ = TX_IDLE;
                } else {
                    // Stop bit low: report and drop the byte (a UART would flag it), then
                    // resynchronise on the next high line.
                    ++framing_errors_;
                    if (framing_errors_ <= 10)
                        std::fprintf(
                            stderr, "vboard: framing error at cycle %llu (byte 0x%02x dropped)%s\n",
                            (unsigned long long)cycles_, tx_shift_,
                            framing_errors_ == 10 ? "; not reporting further ones" : "");
                    tx_state_ = TX_WAIT_HIGH;
                }
                last_activity_ = cycles_;
            }
            break;
        }
    }

    // Host -> design: shift the next frame out, a bit every `divisor` cycles.
    void advance_rx() {
        if (rx_bit_ < 0) return;
        if (--rx_count_) return;
        if (++rx_bit_ < 10) {
            rx_line_ = (uint8_t)((rx_frame_ >> rx_bit_) & 1);
            rx_count_ = o_.divisor;
        } else if (!rx_queue_.empty()) {
            load_frame();
        } else {
            rx_bit_ = -1;
            rx_line_ = 1;
            poll_now_ = true;  // the queue ran dry: fetch more at once, leave no gap
            last_activity_ = cycles_;
        }
    }

    void load_frame() {
        // Bit 0 start (0), bits 1-8 data LSB first, bit 9 stop (1).
        rx_frame_ = (uint16_t)((rx_queue_.pop() << 1) | 0x200);
        rx_bit_ = 0;
        rx_line_ = 0;
        rx_count_ = o_.divisor;
        ++bytes_in_;
        if (rx_queue_.empty()) rx_queue_.clear();
    }

    bool idle() const {
        return rx_bit_ < 0 && rx_queue_.empty() && tx_state_ != TX_BITS && out_.empty() &&
               o_.idle_cycles && cycles_ - last_activity_ >= o_.idle_cycles;
    }

    void read_master();
    void write_master();
    void check_stdin(short revents);
    void print_stats(const char* what);
    void serve_signals();
    void lockstep_wait();
    void end_lockstep(const char* why);

    const Options& o_;
    VerilatedContext* ctx_;
    VBOARD_MODEL* top_;
    int master_;
    const uint32_t half_;

    uint64_t cycles_ = 0;
    uint64_t last_activity_ = 0;
    bool poll_now_ = false;

    // host -> design
    ByteQueue rx_queue_;
    uint16_t rx_frame_ = 0;
    int rx_bit_ = -1;  // -1: line idle
    uint32_t rx_count_ = 0;
    uint8_t rx_line_ = 1;

    // design -> host
    TxState tx_state_ = TX_WAIT_HIGH;
    int tx_bit_ = -1;
    uint32_t tx_count_ = 0;
    uint8_t tx_shift_ = 0;
    ByteQueue out_;

    uint64_t bytes_in_ = 0, bytes_out_ = 0, framing_errors_ = 0, glitches_ = 0;
    // Bytes read from and written to the pty, for --lockstep.
    uint64_t from_host_ = 0, to_host_ = 0, to_host_seen_ = 0;
    bool lockstep_ = false;
    uint64_t host_flushes_ = 0, stats_seq_ = 0;
    size_t peak_pending_ = 0;
    bool warned_pending_ = false;
    const char* exit_reason_ = nullptr;
    double start_time_ = 0, next_stats_ = 0;
};

void Board::read_master() {
    // Packet mode: each read returns either one status byte, or TIOCPKT_DATA then data.
    uint8_t buffer[1 + 65536];
    rx_queue_.compact();
    for (int reads = 0; reads < 4 && rx_queue_.size() < 65536; ++reads) {
        ssize_t n = read(master_, buffer, sizeof buffer);
        if (n <= 0) return;  // EAGAIN (nothing to read), EINTR, or EIO while no slave is open
        if (buffer[0] == TIOCPKT_DATA) {
            if (n > 1) {
                rx_queue_.push(buffer + 1, (size_t)n - 1);
                from_host_ += (uint64_t)n - 1;
                last_activity_ = cycles_;
            }
            continue;
        }
        if (buffer[0] & TIOCPKT_FLUSHREAD) {  // host discarded its input: so do we
            out_.clear();
            ++host_flushes_;
        }
        if (buffer[0] & TIOCPKT_FLUSHWRITE) {  // host discarded its output: unsent bytes go
            rx_queue_.clear();
            ++host_flushes_;
        }
    }
}

void Board::write_master() {
    while (!out_.empty()) {
        ssize_t n = write(master_, out_.front(), out_.size());
        if (n > 0) {
            out_.consume((size_t)n);
            to_host_ += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;  // EAGAIN: the host is not reading; keep the bytes for later
    }
    out_.compact();
    if (out_.size() > peak_pending_) peak_pending_ = out_.size();
    if (!warned_pending_ && out_.size() > (64u << 20)) {
        warned_pending_ = true;
        std::fprintf(stderr, "vboard: warning: %zu bytes queued for a host that is not reading\n",
                     out_.size());
    }
}

void Board::check_stdin(short revents) {
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
    char sink[256];
    ssize_t n = read(STDIN_FILENO, sink, sizeof sink);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) exit_reason_ = "stdin-closed";
}

void Board::print_stats(const char* what) {
    double wall = now_seconds() - start_time_;
    std::fprintf(stderr,
                 "VBOARD %s cycles=%llu bytes_in=%llu bytes_out=%llu framing_errors=%llu "
                 "glitches=%llu pending_in=%zu pending_out=%zu peak_pending_out=%zu "
                 "host_flushes=%llu wall_s=%.3f cycles_per_s=%.0f\n",
                 what, (unsigned long long)cycles_, (unsigned long long)bytes_in_,
                 (unsigned long long)bytes_out_, (unsigned long long)framing_errors_,
                 (unsigned long long)glitches_, rx_queue_.size(), out_.size(), peak_pending_,
                 (unsigned long long)host_flushes_, wall, wall > 0 ? cycles_ / wall : 0.0);
    std::fflush(stderr);
}

void Board::serve_signals() {
    if (g_stop_signal) exit_reason_ = "signal";
    if (g_stats_requested) {
        g_stats_requested = 0;
        char what[48];
        std::snprintf(what, sizeof what, "stats seq=%llu", (unsigned long long)++stats_seq_);
        print_stats(what);
    }
}

void Board::end_lockstep(const char* why) {
    if (lockstep_)
        std::fprintf(stderr, "vboard: lockstep ends at cycle %llu: %s\n",
                     (unsigned long long)cycles_, why);
    lockstep_ = false;
}

// --lockstep: the bytes handed to the host since the last wait are on their way; stop the
// clock until the host has reacted (see the header comment).
void Board::lockstep_wait() {
    uint64_t notice = to_host_ - to_host_seen_;
    to_host_seen_ = to_host_;
    ssize_t n;
    do n = write(o_.notice_fd, &notice, sizeof notice);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof notice) return end_lockstep("the notice pipe is closed");

    // Signals stay blocked except inside ppoll(), so none can slip in between serving them and
    // going to sleep: a stats request while we wait is answered at once, at this cycle.
    sigset_t blocked, old;
    sigemptyset(&blocked);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&blocked, sig);
    sigprocmask(SIG_BLOCK, &blocked, &old);
    uint64_t go = 0;
    size_t got = 0;
    while (lockstep_ && got < sizeof go) {
        serve_signals();
        if (exit_reason_) break;
        pollfd fd = {o_.go_fd, POLLIN, 0};
        const int ready = ppoll(&fd, 1, nullptr, &old);
        if (ready < 0 && errno != EINTR) {
            end_lockstep("cannot wait on the go pipe");
            break;
        }
        if (ready <= 0) continue;  // EINTR: a signal to serve
        n = read(o_.go_fd, reinterpret_cast<char*>(&go) + got, sizeof go - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            end_lockstep("the go pipe is closed");
    }
    sigprocmask(SIG_SETMASK, &old, nullptr);
    if (!lockstep_ || got < sizeof go) return;

    // The host's reaction: everything it wrote before it said go. The kernel may still be
    // moving it through the pty; it is there within microseconds.
    const double deadline = now_seconds() + 2.0;
    while (from_host_ < go && !g_stop_signal) {
        pollfd fd = {master_, POLLIN, 0};
        poll(&fd, 1, 10);
        if (fd.revents & POLLIN) read_master();
        if (now_seconds() > deadline) {
            // The host flushed its output, or counts differently: take its word for it, so
            // later waits do not stall too.
            std::fprintf(stderr, "vboard: lockstep: %llu of the host's %llu bytes arrived\n",
                         (unsigned long long)from_host_, (unsigned long long)go);
            from_host_ = go;
        }
    }
}

int Board::run() {
    start_time_ = now_seconds();
    lockstep_ = o_.notice_fd >= 0;
    next_stats_ = o_.stats_interval > 0 ? start_time_ + o_.stats_interval : 0;

    // Reset: rst high for a few cycles with the receive line idle.
    top_->rst = 1;
    top_->uart_rx = 1;
    for (uint32_t i = 0; i < o_.reset_cycles && !g_stop_signal; ++i) {
        top_->clk = 0;
        top_->eval();
        ctx_->timeInc(1);
        top_->clk = 1;
        top_->eval();
        ctx_->timeInc(1);
        ++cycles_;
    }
    top_->rst = 0;
    last_activity_ = cycles_;

    while (!exit_reason_) {
        uint64_t chunk = o_.poll_interval;
        if (o_.max_cycles) {
            if (cycles_ >= o_.max_cycles) {
                exit_reason_ = "max-cycles";
                break;
            }
            if (o_.max_cycles - cycles_ < chunk) chunk = o_.max_cycles - cycles_;
        }
        for (uint64_t i = 0; i < chunk && !poll_now_; ++i) cycle();

        poll_now_ = false;
        if (!out_.empty()) write_master();
        if (lockstep_ && to_host_ != to_host_seen_) lockstep_wait();

        // Idle for long (both lines quiet, nothing queued): block in poll() for a while so an
        // idle board does not burn a core; a byte from the host wakes us at once.
        const bool sleepy = idle();
        pollfd fds[2] = {{master_, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        const nfds_t nfds = o_.watch_stdin ? 2 : 1;
        if (sleepy) {
            timespec timeout = {0, (long)o_.idle_sleep_us * 1000};
            if (timeout.tv_nsec >= 1000000000L) timeout = {1, 0};
            ppoll(fds, nfds, &timeout, nullptr);
        } else {
            poll(fds, nfds, 0);
        }
        if (fds[0].revents & POLLIN) read_master();
        if (o_.watch_stdin) check_stdin(fds[1].revents);
        if (rx_bit_ < 0 && !rx_queue_.empty()) load_frame();

        serve_signals();
        if (ctx_->gotFinish()) exit_reason_ = "finish";  // the design called $finish
        if (next_stats_ > 0) {
            double now = now_seconds();
            if (now >= next_stats_) {
                print_stats("stats seq=0");
                next_stats_ = now + o_.stats_interval;
            }
        }
    }
    // Best effort: hand over what the design already sent.
    if (!out_.empty()) write_master();
    char what[64];
    std::snprintf(what, sizeof what, "exit reason=%s", exit_reason_);
    print_stats(what);
    return 0;
}

int open_pty(std::string& path, int& slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) {
        std::perror("vboard: posix_openpt");
        return -1;
    }
    if (grantpt(master) != 0 || unlockpt(master) != 0) {
        std::perror("vboard: grantpt/unlockpt");
        close(master);
        return -1;
    }
    const char* name = ptsname(master);
    if (!name) {
        std::perror("vboard: ptsname");
        close(master);
        return -1;
    }
    path = name;
    // Held open for our whole life: see the header comment.
    slave = open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        std::perror("vboard: open pty slave");
        close(master);
        return -1;
    }
    termios tio;
    if (tcgetattr(slave, &tio) != 0) {
        std::perror("vboard: tcgetattr");
        return -1;
    }
    cfmakeraw(&tio);
    cfsetispeed(&tio, B115200);
    cfsetospeed(&tio, B115200);
    if (tcsetattr(slave, TCSANOW, &tio) != 0) {
        std::perror("vboard: tcsetattr");
        return -1;
    }
    int one = 1;
    if (ioctl(master, TIOCPKT, &one) != 0) {
        std::perror("vboard: ioctl(TIOCPKT)");
        return -1;
    }
    fcntl(master, F_SETFD, FD_CLOEXEC);
    int flags = fcntl(master, F_GETFL);
    if (flags < 0 || fcntl(master, F_SETFL, flags | O_NONBLOCK) != 0) {
        std::perror("vboard: fcntl(O_NONBLOCK)");
        return -1;
    }
    return master;
}

bool write_pty_file(const std::string& file, const std::string& path) {
    std::string temporary = file + ".tmp." + std::to_string(getpid());
    FILE* out = std::fopen(temporary.c_str(), "w");
    if (!out) return false;
    std::fprintf(out, "%s\n", path.c_str());
    bool ok = std::fclose(out) == 0;
    return ok && std::rename(temporary.c_str(), file.c_str()) == 0;
}

void install_signals() {
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a signal interrupts an idle poll() at once
    action.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGHUP, &action, nullptr);
    action.sa_handler = on_stats_signal;
    sigaction(SIGUSR1, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    if (!parse_options(argc, argv, options)) return 2;
    install_signals();

    // stdin is only read after poll() reports it readable, so it stays blocking: setting
    // O_NONBLOCK would change the open file, which an interactive shell shares with us.
    if (options.watch_stdin && fcntl(STDIN_FILENO, F_GETFL) < 0) {
        std::fprintf(stderr, "vboard: stdin is closed; pass --no-stdin-watch to run "
                             "without a parent pipe\n");
        return 2;
    }

    std::string path;
    int slave = -1;
    int master = open_pty(path, slave);
    if (master < 0) return 1;

    const std::unique_ptr<VerilatedContext> context{new VerilatedContext};
    context->commandArgs(argc, argv);
    const std::unique_ptr<VBOARD_MODEL> top{new VBOARD_MODEL{context.get(), "TOP"}};

    std::printf("PTY %s\n", path.c_str());
    std::fflush(stdout);
    // Nothing else may reach stdout: a parent that has read the path stops reading, and the
    // design's $display output would fill the pipe and block the simulation. Send it to stderr.
    dup2(STDERR_FILENO, STDOUT_FILENO);
    if (!options.pty_file.empty() && !write_pty_file(options.pty_file, path)) {
        std::fprintf(stderr, "vboard: cannot write %s: %s\n", options.pty_file.c_str(),
                     std::strerror(errno));
        return 1;
    }
    std::fprintf(stderr, "vboard: %s, %u cycles per bit, pid %d\n", path.c_str(),
                 options.divisor, (int)getpid());
    std::fflush(stderr);

    Board board(options, context.get(), top.get(), master);
    int status = board.run();
    top->final();
    close(master);
    close(slave);
    return status;
}
