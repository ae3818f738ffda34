// Launch geometry shared by the elementwise kernels.
#pragma once

#include <cstdint>

namespace cr::cuda::kernels {

constexpr int kThreads = 256;

// Enough blocks to cover n with grid-stride loops, capped so that a huge tensor does not launch
// millions of blocks (each thread then loops).
inline unsigned Blocks(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b > 65535) b = 65535;
  return unsigned(b < 1 ? 1 : b);
}

}  // namespace cr::cuda::kernels
