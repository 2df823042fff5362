#pragma once
// A persistent pool of worker threads. parallel_for splits [0, n) into one
// contiguous chunk per thread; the caller runs chunk 0. parallel_pieces cuts
// [0, n) into pieces and lets a thread that finishes its own share take the
// last pieces of the others'. The callable takes (begin, end) or (begin, end,
// thread index) for per-thread scratch. Work is never split inside a
// reduction, so results do not depend on the thread count or on who ran what.
// No allocation and no locking per call: workers wait on a generation counter.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

namespace ncas {

class thread_pool {
public:
    explicit thread_pool(int n_threads = int(std::max(1u, std::thread::hardware_concurrency())))
        : n_threads_(std::max(1, n_threads)), shares_(std::make_unique<share[]>(size_t(n_threads_))) {
        workers_.reserve(size_t(n_threads_ - 1));
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() {
        stop_.store(true, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
        for (auto& w : workers_) w.join();
    }

    int size() const { return n_threads_; }

    // Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
    // min_chunk: the least items worth a thread of their own (small jobs stay on the caller).
    template <class F>
    void parallel_for(int64_t n, F&& fn, int64_t min_chunk = 1) {
        if (n <= 0) return;
        const int used = int(std::clamp<int64_t>(n / std::max<int64_t>(min_chunk, 1), 1, n_threads_));
        using fn_t = std::remove_reference_t<F>;
        auto call = [](void* f, int64_t b, int64_t e, int i) { invoke(*static_cast<fn_t*>(f), b, e, i); };
        if (used == 1) { call(&fn, 0, n, 0); return; }
        job_ = {&fn, call, n, used};
        pending_.store(n_threads_ - 1, std::memory_order_relaxed);  // every worker checks in
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
        run_chunk(0);
        // Spin briefly (chunks are balanced), then sleep: on a busy machine a
        // worker may wait for a time slice, and spinning would only steal it.
        for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin)
            if (spin > spin_limit) {
                const int left = pending_.load(std::memory_order_acquire);
                if (left != 0) pending_.wait(left, std::memory_order_acquire);
            }
    }

    // Calls fn on pieces of `grain` items (the last may be shorter) covering [0, n),
    // each piece once. Thread i starts on the front of its own contiguous share of
    // the pieces; when that is done it takes pieces from the back of the others'.
    // Decode streams weights from memory, and two threads rarely stream at the same
    // speed: a static split waited for the slower one at every matrix (perf: 14% of
    // decode's thread time, 5% with pieces), while here each thread still reads its
    // own rows front to back.
    template <class F>
    void parallel_pieces(int64_t n, int64_t grain, F&& fn) {
        if (n <= 0) return;
        grain = std::max({grain, int64_t(1), (n >> 31) + 1});  // piece indices fit a share's 32-bit halves
        const int64_t pieces = (n + grain - 1) / grain;
        const int used = int(std::min<int64_t>(pieces, n_threads_));
        auto run = [&](int64_t p, int i) { invoke(fn, p * grain, std::min(n, (p + 1) * grain), i); };
        if (used == 1) {
            for (int64_t p = 0; p < pieces; ++p) run(p, 0);
            return;
        }
        for (int i = 0; i < used; ++i) {
            const auto [b, e] = chunk(pieces, used, i);
            shares_[size_t(i)].range.store(uint64_t(b) | uint64_t(e) << 32, std::memory_order_relaxed);
        }
        parallel_for(used, [&](int64_t, int64_t, int i) {
            for (int64_t p; (p = take(i, true)) >= 0;) run(p, i);
            for (int j = 1; j < used; ++j)
                for (int64_t p; (p = take((i + j) % used, false)) >= 0;) run(p, i);
        });
    }

    // Chunk i of n split `parts` ways: balanced contiguous ranges.
    static std::pair<int64_t, int64_t> chunk(int64_t n, int parts, int i) {
        return {n * i / parts, n * (i + 1) / parts};
    }

private:
    // Polls of the counter before sleeping on it (about 0.5 ms): decode runs a few
    // hundred short jobs a token with serial work between them, and a futex wake
    // per job measured 5% slower decode than spinning through those gaps.
    static constexpr int spin_limit = 400000;

    struct job {
        void* fn = nullptr;
        void (*call)(void*, int64_t, int64_t, int) = nullptr;
        int64_t n = 0;
        int parts = 0;
    };

    // The callable with the thread index when it takes one.
    template <class Fn>
    static void invoke(Fn& fn, int64_t b, int64_t e, int i) {
        if constexpr (std::is_invocable_v<Fn&, int64_t, int64_t, int>) fn(b, e, i);
        else fn(b, e);
    }

    // A share of parallel_pieces: pieces [front, back), packed in one word so the
    // owner (front) and a thief (back) agree on the last piece with one CAS.
    struct alignas(64) share {
        std::atomic<uint64_t> range{0};
    };

    // The next piece of share j from its front (the owner) or its back (a thief); -1 when none is left.
    int64_t take(int j, bool front) {
        std::atomic<uint64_t>& r = shares_[size_t(j)].range;
        uint64_t v = r.load(std::memory_order_relaxed);
        for (;;) {
            const uint64_t f = v & 0xffffffffu, b = v >> 32;
            if (f >= b) return -1;
            const uint64_t next = front ? (f + 1) | b << 32 : f | (b - 1) << 32;
            if (r.compare_exchange_weak(v, next, std::memory_order_relaxed)) return int64_t(front ? f : b - 1);
        }
    }

    void run_chunk(int i) {
        const auto [b, e] = chunk(job_.n, job_.parts, i);
        if (b < e) job_.call(job_.fn, b, e, i);
    }

    void worker(int index) {
        uint64_t seen = 0;
        for (;;) {
            // Spin briefly (decode issues many small jobs back to back), then sleep.
            uint64_t g = generation_.load(std::memory_order_acquire);
            for (int spin = 0; g == seen && spin < spin_limit; ++spin) g = generation_.load(std::memory_order_acquire);
            if (g == seen) { generation_.wait(seen, std::memory_order_acquire); continue; }
            seen = g;
            if (stop_.load(std::memory_order_relaxed)) return;
            if (index < job_.parts) run_chunk(index);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
        }
    }

    int n_threads_;
    std::unique_ptr<share[]> shares_;
    std::vector<std::thread> workers_;
    job job_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
};

}  // namespace ncas
