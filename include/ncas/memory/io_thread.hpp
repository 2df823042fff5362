#pragma once
// One background thread that runs posted jobs in order (the arena's prefetch
// reads). A job that is no longer wanted is not removed from the queue: it
// checks, when it starts, whether its work is still needed. On destruction the
// jobs not yet started are dropped and the running one is waited for.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace ncas {

class io_thread {
public:
    io_thread() : worker_([this] { run(); }) {}
    io_thread(const io_thread&) = delete;
    io_thread& operator=(const io_thread&) = delete;
    ~io_thread() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
            jobs_.clear();
        }
        wake_.notify_one();
        worker_.join();
    }

    // Jobs must not throw (they report failure through their own state).
    void post(std::function<void()> job) {
        {
            std::lock_guard lock(mu_);
            jobs_.push_back(std::move(job));
        }
        wake_.notify_one();
    }

private:
    void run() {
        std::unique_lock lock(mu_);
        while (true) {
            wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
            if (stop_) return;
            std::function<void()> job = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            job();
            lock.lock();
        }
    }

    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::thread worker_;  // last: starts after the queue exists
};

}  // namespace ncas
