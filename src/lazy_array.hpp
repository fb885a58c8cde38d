// Internal. A fixed-capacity array whose pages cost memory only once touched.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace myriad::detail {

// Reserves capacity elements of address space at construction (MAP_NORESERVE) and relies on
// the kernel's zero pages: an element reads as all-zero bytes until written, and RSS grows
// only with the pages actually used. So a table sized for a million connections costs nothing
// until connections arrive. T must be valid when all-zero and trivially destructible.
template <class T>
class LazyArray {
  static_assert(std::is_trivially_destructible_v<T>);

 public:
  LazyArray() = default;
  explicit LazyArray(std::size_t capacity) : capacity_(capacity) {
    if (capacity == 0) return;
    bytes_ = capacity * sizeof(T);
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      throw std::runtime_error("reserve " + std::to_string(bytes_) +
                               " bytes of address space failed");
    }
    data_ = static_cast<T*>(p);
  }
  LazyArray(const LazyArray&) = delete;
  LazyArray& operator=(const LazyArray&) = delete;
  LazyArray(LazyArray&& other) noexcept { swap(other); }
  LazyArray& operator=(LazyArray&& other) noexcept {
    swap(other);
    return *this;
  }
  ~LazyArray() {
    if (data_ != nullptr) ::munmap(data_, bytes_);
  }

  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  std::size_t size() const { return capacity_; }
  T* data() { return data_; }

 private:
  void swap(LazyArray& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(capacity_, other.capacity_);
    std::swap(bytes_, other.bytes_);
  }

  T* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace myriad::detail
