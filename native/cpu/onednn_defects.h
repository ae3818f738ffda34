// Workarounds for defects of particular oneDNN releases, each reproduced with a standalone
// program against the release named (docs/building.md, "oneDNN 3.x defects and what we do").
//
// They are switched on by the oneDNN found at run time, so an addon built against 3.x headers
// and run with a fixed library takes oneDNN's own path. CUDNN_RESNET_ONEDNN_WORKAROUNDS=1 forces
// them on with any oneDNN, so that the test suite checks them on the oneDNN that CI runs (2.6);
// =0 forces them off, to show a defect.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <string>
#include <vector>

#include "../common/op_args.h"

namespace cr::cpu::defects {

// oneDNN 3.x (3.7.2 reproduced): a reorder into or out of a layout with two inner blocks
// (ABcd16a16b, ABcd16b16a: convolution weights) whose blocked dims are padded (channels not a
// multiple of 16) puts elements in the wrong places, single-threaded always. Convolutions then
// compute wrong gradients without any error.
bool ReorderIsWrong(const dnnl::memory::desc& src, const dnnl::memory::desc& dst);

// Copies a tensor between two layouts of the same dims element by element, converting between
// float32, bfloat16 and float16 where the types differ (as a reorder does), and writing zeros
// into the destination's padding (kernels read whole blocks). Worker thread.
void CopyBetweenLayouts(const dnnl::memory::desc& src_md, const void* src, const dnnl::memory::desc& dst_md,
                        void* dst);

// oneDNN 3.0 to 3.11 (3.7.2 reproduced; 3.12 and 2.6 do not): creating the backward-data
// primitive of a 1x1 stride-2 convolution with 1024 output channels (ResNet-50's layer3
// downsample) kills the process with SIGFPE in the brgconv_strided set-up. Such a backward is
// computed as the stride-1 backward over the strided positions, scattered into zeros.
bool AvoidStridedPointwiseBackwardData(const Conv2dGeometry& g);

// The workarounds in effect, for info().
std::vector<std::string> Active();

}  // namespace cr::cpu::defects
