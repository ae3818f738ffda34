// ReLU, its backward, scaling, addition and the fused add + ReLU of residual blocks, on oneDNN.
//
// These ops run on whatever layout their first input has (a convolution's blocked nChw16c, or
// plain), and their output keeps it: converting a blocked activation to plain and back would
// cost more than the op itself.
#include "cpu_backend.h"

namespace cr::cpu {

namespace {

using dnnl::algorithm;
using dnnl::prop_kind;

struct UnaryEntry {
  dnnl::eltwise_forward::primitive_desc pd;
  dnnl::eltwise_forward prim;
};

struct ReluBackwardEntry {
  dnnl::eltwise_backward::primitive_desc pd;
  dnnl::eltwise_backward prim;
};

struct BinaryEntry {
  dnnl::binary::primitive_desc pd;
  dnnl::binary prim;
};

}  // namespace

StoragePtr CpuBackend::Elementwise(const ElementwiseArgs& a) {
  CpuStoragePtr x = Cpu(a.a);
  switch (a.op) {
    case ElementwiseOp::kRelu:
    case ElementwiseOp::kScale: {
      // y = f(x) for one of oneDNN's element-wise algorithms; the output keeps x's layout.
      const bool relu = a.op == ElementwiseOp::kRelu;
      const float alpha = relu ? 0.f : a.alpha;
      std::string key = std::string(relu ? "relu;" : "scale;") + std::to_string(alpha) + ";";
      AppendDesc(key, x->md);
      auto e = Cached<UnaryEntry>(key, [&] {
        auto pd = CR_DNNL(compat::EltwiseForward(engine_, prop_kind::forward_training,
                                                 relu ? algorithm::eltwise_relu : algorithm::eltwise_linear, x->md, alpha,
                                                 0.f, Attr()));
        return std::make_shared<UnaryEntry>(UnaryEntry{pd, CR_DNNL(dnnl::eltwise_forward(pd))});
      });
      CpuStoragePtr y = Alloc(x->dims, a.dtype, e->pd.dst_desc());
      Push(a.task, [this, e, x, y] { CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC, Mem(*x)}, {DNNL_ARG_DST, Mem(*y)}})); });
      return y;
    }
    case ElementwiseOp::kReluBackward: {
      // From the forward's output: relu_use_dst_for_bwd.
      std::string key = "relu_bwd;";
      AppendDesc(key, x->md);
      auto e = Cached<ReluBackwardEntry>(key, [&] {
        const algorithm alg = algorithm::eltwise_relu_use_dst_for_bwd;
        auto hint = CR_DNNL(compat::EltwiseForward(engine_, prop_kind::forward_training, alg, x->md, 0.f, 0.f, Attr()));
        auto pd = CR_DNNL(compat::EltwiseBackward(engine_, alg, x->md, 0.f, 0.f, hint, Attr()));
        return std::make_shared<ReluBackwardEntry>(ReluBackwardEntry{pd, CR_DNNL(dnnl::eltwise_backward(pd))});
      });
      CpuStoragePtr dys = InLayout(Cpu(a.b), e->pd.diff_dst_desc());
      CpuStoragePtr dx = Alloc(x->dims, a.dtype, e->pd.diff_src_desc());
      Push(a.task, [this, e, x, dys, dx] {
        CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_DST, Mem(*x)}, {DNNL_ARG_DIFF_DST, Mem(*dys)}, {DNNL_ARG_DIFF_SRC, Mem(*dx)}}));
      });
      return dx;
    }
    case ElementwiseOp::kAdd:
    case ElementwiseOp::kAddRelu: {
      // a + b, with a ReLU post-op for addRelu: the fused form reads and writes the activation
      // once instead of twice.
      const bool relu = a.op == ElementwiseOp::kAddRelu;
      std::string key = relu ? "add_relu;" : "add;";
      AppendDesc(key, x->md);
      auto e = Cached<BinaryEntry>(key, [&] {
        dnnl::primitive_attr attr = Attr();
        if (relu) {
          dnnl::post_ops ops;
          CR_DNNL(compat::AppendEltwise(ops, algorithm::eltwise_relu, 0.f, 0.f));
          CR_DNNL(attr.set_post_ops(ops));
        }
        auto pd = CR_DNNL(compat::Binary(engine_, algorithm::binary_add, x->md, x->md, x->md, attr));
        return std::make_shared<BinaryEntry>(BinaryEntry{pd, CR_DNNL(dnnl::binary(pd))});
      });
      CpuStoragePtr bs = InLayout(Cpu(a.b), e->pd.src1_desc());
      CpuStoragePtr y = Alloc(x->dims, a.dtype, e->pd.dst_desc());
      Push(a.task, [this, e, x, bs, y] {
        CR_DNNL(Execute(e->pd, e->prim, {{DNNL_ARG_SRC_0, Mem(*x)}, {DNNL_ARG_SRC_1, Mem(*bs)}, {DNNL_ARG_DST, Mem(*y)}}));
      });
      return y;
    }
  }
  Fail("ERR_NATIVE", "unknown element-wise op");
}

}  // namespace cr::cpu
