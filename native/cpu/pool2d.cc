#include "ops.h"
namespace cr::cpu {
void RegisterPool2d(Napi::Env, Napi::Object) {}
}  // namespace cr::cpu
