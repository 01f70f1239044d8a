#pragma once
// A dense n-d tensor: dtype, shape, element strides, and shared 64-byte-aligned storage.
// Copies share storage (like a view); clone() makes an owned deep copy.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "sparseloom/core/buffer_cache.hpp"
#include "sparseloom/core/dtype.hpp"
#include "sparseloom/core/error.hpp"

namespace sparseloom {

using Shape = std::vector<std::int64_t>;

inline std::string to_string(const Shape& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) r.push_back(',');
    r.append(std::to_string(s[i]));
  }
  r.push_back(']');
  return r;
}

// Number of elements; throws on negative dims or overflow so bad files cannot wrap sizes. The
// bound is on the product of the non-zero dims: an empty tensor with huge other dims would
// still overflow its strides.
inline std::int64_t numel_of(const Shape& s, std::string_view where = "shape") {
  std::int64_t n = 1, extent = 1;
  // numel() sits in loop conditions: the messages are only built when a check fails.
  for (auto d : s) {
    if (d < 0) [[unlikely]]
      throw Error(ErrorCode::shape, std::string(where), "negative dimension in " + to_string(s));
    const std::int64_t e = std::max<std::int64_t>(d, 1);
    if (extent > (std::int64_t{1} << 40) / e) [[unlikely]]
      throw Error(ErrorCode::shape, std::string(where), "tensor too large: " + to_string(s));
    extent *= e;
    n *= d;
  }
  return n;
}

inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  std::int64_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

class Tensor {
 public:
  static constexpr std::size_t kAlignment = 64;

  Tensor() = default;

  static Tensor empty(Shape shape, DType dtype) {
    Tensor t;
    t.dtype_ = dtype;
    const auto n = numel_of(shape);
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    const std::size_t bytes = std::max<std::size_t>(static_cast<std::size_t>(n) * size_of(dtype), 1);
    // Large buffers come from, and go back to, the reuse cache (buffer_cache.hpp: page faults).
    static_assert(detail::BufferCache::kAlignment == kAlignment);
    std::size_t got = 0;
    auto* p = static_cast<std::byte*>(detail::BufferCache::instance().allocate(bytes, &got));
    t.storage_ = std::shared_ptr<std::byte>(p, [got](std::byte* q) { detail::BufferCache::instance().release(q, got); });
    t.capacity_ = got;
    return t;
  }

  static Tensor zeros(Shape shape, DType dtype) {
    Tensor t = empty(std::move(shape), dtype);
    if (t.nbytes() > 0) std::memset(t.raw(), 0, t.nbytes());  // raw() may be null when empty
    return t;
  }

  template <class T>
  static Tensor from(Shape shape, std::span<const T> values) {
    Tensor t = empty(std::move(shape), dtype_v<T>);
    check(static_cast<std::size_t>(t.numel()) == values.size(), ErrorCode::shape, "Tensor::from",
          std::to_string(values.size()) + " values for shape " + to_string(t.shape_));
    // memcpy from a null pointer is undefined even for 0 bytes (an empty ONNX initializer:
    // tests/fuzz/regressions/onnx_import/crash-d53290f3...).
    if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size_bytes());
    return t;
  }
  template <class T>
  static Tensor from(Shape shape, const std::vector<T>& v) {
    return from<T>(std::move(shape), std::span<const T>(v));
  }

  bool defined() const noexcept { return storage_ != nullptr; }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  const Shape& strides() const noexcept { return strides_; }
  std::size_t rank() const noexcept { return shape_.size(); }
  // Accessors sit on hot paths: the error message is only built when the check fails.
  std::int64_t dim(std::size_t i) const {
    if (i >= shape_.size()) [[unlikely]]
      throw Error(ErrorCode::shape, "Tensor::dim", "axis " + std::to_string(i) + " of a rank-" + std::to_string(rank()) + " tensor");
    return shape_[i];
  }
  std::int64_t numel() const { return numel_of(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * size_of(dtype_); }
  bool is_contiguous() const { return strides_ == contiguous_strides(shape_); }

  std::byte* raw() const noexcept { return storage_.get() + offset_; }

  template <class T>
  T* data() const {
    if (dtype_v<T> != dtype_) [[unlikely]]
      throw Error(ErrorCode::invalid_argument, "Tensor::data",
                  std::string("tensor is ") + std::string(to_string(dtype_)) + ", asked for " + std::string(to_string(dtype_v<T>)));
    return reinterpret_cast<T*>(raw());
  }
  template <class T>
  std::span<T> span() const {
    check(is_contiguous(), ErrorCode::invalid_argument, "Tensor::span", "tensor is not contiguous");
    return {data<T>(), static_cast<std::size_t>(numel())};
  }

  // Same storage, new shape; needs a contiguous tensor and the same element count.
  Tensor reshape(Shape shape) const {
    check(is_contiguous(), ErrorCode::invalid_argument, "Tensor::reshape", "tensor is not contiguous");
    check(numel_of(shape) == numel(), ErrorCode::shape, "Tensor::reshape",
          "cannot reshape " + to_string(shape_) + " to " + to_string(shape));
    Tensor t = *this;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    return t;
  }

  // A view of [begin, end) along `axis`, sharing storage.
  Tensor slice(std::size_t axis, std::int64_t begin, std::int64_t end) const {
    check(axis < rank() && 0 <= begin && begin <= end && end <= shape_[axis], ErrorCode::shape,
          "Tensor::slice", "bad slice on " + to_string(shape_));
    Tensor t = *this;
    t.offset_ += static_cast<std::size_t>(begin * strides_[axis]) * size_of(dtype_);
    t.shape_[axis] = end - begin;
    return t;
  }

  // An owned, contiguous deep copy.
  Tensor clone() const {
    Tensor t = empty(shape_, dtype_);
    if (is_contiguous()) {
      if (nbytes() > 0) std::memcpy(t.raw(), raw(), nbytes());
    } else {
      copy_strided(t);
    }
    return t;
  }
  Tensor contiguous() const { return is_contiguous() ? *this : clone(); }

  bool same_storage(const Tensor& o) const noexcept { return storage_ == o.storage_; }

 private:
  void copy_strided(Tensor& dst) const {
    const std::size_t es = size_of(dtype_);
    const auto n = numel();
    std::vector<std::int64_t> idx(rank(), 0);
    for (std::int64_t i = 0; i < n; ++i) {
      std::int64_t off = 0;
      for (std::size_t a = 0; a < rank(); ++a) off += idx[a] * strides_[a];
      std::memcpy(dst.raw() + static_cast<std::size_t>(i) * es, raw() + static_cast<std::size_t>(off) * es, es);
      for (std::size_t a = rank(); a-- > 0;) {
        if (++idx[a] < shape_[a]) break;
        idx[a] = 0;
      }
    }
  }

  DType dtype_ = DType::f32;
  Shape shape_;
  Shape strides_;
  std::shared_ptr<std::byte> storage_;
  std::size_t offset_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace sparseloom
