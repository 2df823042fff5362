#pragma once
// A persistent pool of worker threads. parallel_for splits [0, n) into one
// contiguous chunk per thread; the caller runs chunk 0. The callable takes
// (begin, end) or (begin, end, thread index) for per-thread scratch. Work is never split
// inside a reduction, so results do not depend on the thread count.
// No allocation and no locking per call: workers wait on a generation counter.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace ncas {

class thread_pool {
public:
    explicit thread_pool(int n_threads = int(std::max(1u, std::thread::hardware_concurrency())))
        : n_threads_(std::max(1, n_threads)) {
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
        auto call = [](void* f, int64_t b, int64_t e, int i) {
            if constexpr (std::is_invocable_v<fn_t&, int64_t, int64_t, int>) (*static_cast<fn_t*>(f))(b, e, i);
            else (*static_cast<fn_t*>(f))(b, e);
        };
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
    std::vector<std::thread> workers_;
    job job_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
};

}  // namespace ncas
