// Buffer: a growable byte buffer with a read position, for connection input.
//
// libuv reads straight into the free tail (Reserve + Commit), the parser reads
// from the unread part (view), and Consume advances past parsed commands.
// Unlike std::string, growing it does not zero-fill, which matters on the hot
// path where every read asks for 64 KiB of room.
//
// Thread-safety: none.

#ifndef DISTRI_NET_BUFFER_H_
#define DISTRI_NET_BUFFER_H_

#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace distri::net {

class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::string_view view() const { return {data_ + pos_, size_ - pos_}; }
  size_t readable() const { return size_ - pos_; }
  bool empty() const { return pos_ == size_; }

  // Makes room for at least n more bytes and returns where to write them.
  char* Reserve(size_t n) {
    if (pos_ == size_) pos_ = size_ = 0;  // cheap reset when drained
    if (cap_ - size_ < n) {
      if (pos_ > 0) {  // slide unread bytes to the front first
        std::memmove(data_, data_ + pos_, size_ - pos_);
        size_ -= pos_;
        pos_ = 0;
      }
      if (cap_ - size_ < n) {
        size_t want = cap_ ? cap_ : 4096;
        while (want - size_ < n) want *= 2;
        char* grown = static_cast<char*>(std::realloc(data_, want));
        if (grown == nullptr) throw std::bad_alloc();
        data_ = grown;
        cap_ = want;
      }
    }
    return data_ + size_;
  }
  void Commit(size_t n) { size_ += n; }
  void Consume(size_t n) { pos_ += n; }
  // Releases memory when a large buffer has drained (after a big command).
  void ShrinkIfIdle(size_t keep) {
    if (pos_ == size_ && cap_ > keep) {
      std::free(data_);
      data_ = nullptr;
      cap_ = size_ = pos_ = 0;
    }
  }
  size_t capacity() const { return cap_; }

 private:
  char* data_ = nullptr;
  size_t pos_ = 0;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace distri::net

#endif  // DISTRI_NET_BUFFER_H_
