// The skinny linear kernels (Sources/Compute/CUDA/Kernels/SkinnyLinearKernels.swift) under the CPU emulation
// of emu.h: `skinny_linear` against a double-precision reference, and each fused form against the unfused
// kernels it replaces, bit for bit (several layers of one x against one `skinny_linear` each; linear +
// activation against `skinny_linear` then `activation`; gate/up + SwiGLU against two `skinny_linear` then
// `swiglu`), for f32/bf16/f16 weights, x in f32 or the weights' type, outputs in f32 or the weights'
// type, 1, 7 and 11 rows (two block rows), with and without biases. The host compiler is not NVRTC, so
// "bit for bit" here checks the kernels' logic (columns, rows, biases, epilogues), not the GPU's rounding;
// `colocate cuda-check --parity-only` checks that on a GPU. Exits 1 when a check fails.
#include "kernels.cpp"
#include <random>
#include <string>
std::mt19937 rng(7);
int failures = 0;

std::vector<float> rnd(size_t n, float lo = -1, float hi = 1) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
template <typename T> std::vector<T> as(const std::vector<float>& v) {
    std::vector<T> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = from_float<T>(v[i]);
    return r;
}
template <typename T> std::vector<float> floats(const std::vector<T>& v) {
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); i++) r[i] = to_float(v[i]);
    return r;
}
template <typename T> const char* name() {
    if constexpr (std::is_same_v<T, float>) return "f32";
    else if constexpr (std::is_same_v<T, bf16>) return "bf16";
    else return "f16";
}
void report(const std::string& label, bool ok, const std::string& detail = "") {
    if (!ok) failures++;
    printf("%s %-60s %s\n", ok ? "ok  " : "FAIL", label.c_str(), detail.c_str());
}
bool same(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

constexpr unsigned WARPS = 8;
dim3 grid(int columns, int n) { return {(columns + WARPS - 1) / WARPS, (unsigned)((n + SKINNY_ROWS - 1) / SKINNY_ROWS), 1}; }
dim3 block() { return {32 * WARPS, 1, 1}; }

// One layer: weights [O, K] and a bias as W, and the values the GPU multiplies (rounded as stored).
template <typename W> struct Layer {
    int O;
    std::vector<W> w, b;
    bool hasBias;
    Layer(int O, int K, bool hasBias) : O(O), w(as<W>(rnd((size_t)O * K, -0.2f, 0.2f))), b(as<W>(rnd(O))), hasBias(hasBias) {}
    const W* bias() const { return hasBias ? b.data() : nullptr; }
};

template <typename W, typename X> std::vector<float> linear(const std::vector<X>& x, const Layer<W>& l, int n, int K) {
    std::vector<float> y((size_t)n * l.O, NAN);
    launch<const X*, const W*, const W*, float*, int, int, int>(skinny_linear<W, X>, grid(l.O, n), block(), x.data(), l.w.data(),
                                                                 l.bias(), y.data(), n, K, l.O);
    return y;
}

template <typename W, typename X, typename Y>
void check_epilogues(const std::vector<X>& x, int n, int K, bool withBias, const std::string& shape) {
    std::string label = shape + " -> " + name<Y>();
    Layer<W> fc1(24, K, withBias), gate(16, K, withBias), up(16, K, withBias);
    auto hidden = linear(x, fc1, n, K);
    for (int kind = 0; kind < 4; kind++) {
        std::vector<Y> fused((size_t)n * fc1.O), unfused((size_t)n * fc1.O);
        launch<const X*, const W*, const W*, Y*, int, int, int, int>(skinny_linear_act<W, X, Y>, grid(fc1.O, n), block(), x.data(),
                                                                     fc1.w.data(), fc1.bias(), fused.data(), n, K, fc1.O, kind);
        launch<const float*, Y*, i64, int>(activation<Y>, {1, 1, 1}, {256, 1, 1}, hidden.data(), unfused.data(), (i64)hidden.size(), kind);
        report("skinny_linear_act kind " + std::to_string(kind) + " " + label, same(floats(fused), floats(unfused)));
    }
    std::vector<Y> fused((size_t)n * gate.O), unfused((size_t)n * gate.O);
    launch<const X*, const W*, const W*, const W*, const W*, Y*, int, int, int>(
        skinny_gated<W, X, Y>, grid(gate.O, n), block(), x.data(), gate.w.data(), gate.bias(), up.w.data(), up.bias(), fused.data(), n, K, gate.O);
    auto g = linear(x, gate, n, K), u = linear(x, up, n, K);
    launch<const float*, const float*, Y*, i64>(swiglu<Y>, {1, 1, 1}, {256, 1, 1}, g.data(), u.data(), unfused.data(), (i64)g.size());
    report("skinny_gated " + label, same(floats(fused), floats(unfused)));
}

template <typename W, typename X> void check(int n, int K, bool withBias) {
    std::string shape = std::string(name<W>()) + " on " + name<X>() + " [" + std::to_string(n) + "," + std::to_string(K) + "]" +
                        (withBias ? " +b" : "");
    auto xf = rnd((size_t)n * K);
    std::vector<X> x = as<X>(xf);
    // What the kernel multiplies: x rounded to W (f32 x meets 16-bit weights as W), or x as stored.
    std::vector<float> xr = floats(as<W>(floats(x)));

    // skinny_linear against double.
    Layer<W> q(40, K, withBias), k(8, K, withBias), v(8, K, false);
    auto y = linear(x, q, n, K);
    auto wf = floats(q.w), bf = floats(q.b);
    double worst = 0;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < q.O; o++) {
            double s = withBias ? bf[o] : 0;
            for (int e = 0; e < K; e++) s += (double)xr[r * K + e] * wf[o * K + e];
            worst = std::max(worst, fabs(y[r * q.O + o] - s));
        }
    char detail[32];
    snprintf(detail, sizeof detail, "max|Δ| %.2e", worst);
    report("skinny_linear " + shape, worst < 1e-5, detail);

    // Three layers of one x (v without a bias): each output is its layer's skinny_linear.
    std::vector<float> yq((size_t)n * q.O, NAN), yk((size_t)n * k.O, NAN), yv((size_t)n * v.O, NAN);
    launch<const X*, int, int, const W*, const W*, float*, int, const W*, const W*, float*, int, const W*, const W*, float*, int>(
        skinny_linears<W, X>, grid(q.O + k.O + v.O, n), block(), x.data(), n, K, q.w.data(), q.bias(), yq.data(), q.O,
        k.w.data(), k.bias(), yk.data(), k.O, v.w.data(), v.bias(), yv.data(), v.O);
    report("skinny_linears q,k,v " + shape, same(yq, y) && same(yk, linear(x, k, n, K)) && same(yv, linear(x, v, n, K)));
    // Two layers (the third takes no columns).
    std::vector<float> y2((size_t)n * k.O, NAN), y3((size_t)n * v.O, NAN);
    launch<const X*, int, int, const W*, const W*, float*, int, const W*, const W*, float*, int, const W*, const W*, float*, int>(
        skinny_linears<W, X>, grid(k.O + v.O, n), block(), x.data(), n, K, k.w.data(), k.bias(), y2.data(), k.O,
        v.w.data(), v.bias(), y3.data(), v.O, nullptr, nullptr, nullptr, 0);
    report("skinny_linears k,v " + shape, same(y2, linear(x, k, n, K)) && same(y3, linear(x, v, n, K)));

    check_epilogues<W, X, float>(x, n, K, withBias, shape);
    if constexpr (!std::is_same_v<W, float>) check_epilogues<W, X, W>(x, n, K, withBias, shape);
}

template <typename W> void all(int n, int K, bool withBias) {
    check<W, float>(n, K, withBias);
    if constexpr (!std::is_same_v<W, float>) check<W, W>(n, K, withBias);
}

int main() {
    for (int n : {1, 7, 11}) {
        for (bool withBias : {false, true}) {
            all<float>(n, 320, withBias);
            all<bf16>(n, 320, withBias);
            all<f16>(n, 320, withBias);
        }
    }
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
