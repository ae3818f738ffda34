#include "ops.h"
namespace cr::cpu {
void RegisterElementwise(Napi::Env, Napi::Object) {}
}  // namespace cr::cpu
