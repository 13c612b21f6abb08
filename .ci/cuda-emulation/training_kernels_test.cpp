// The training kernels (Sources/Compute/CUDA/Kernels/TrainingKernels*.swift) under the CPU emulation of
// emu.h, against double-precision references written plainly here: flash attention forward and
// backward (MHA, GQA, head dims 16/64/80/128, sequences not multiple of a tile), log-probs with entropy
// and their backward (with its bf16 copy), layer/RMS norm backward, the bias column sum, Σ x² in f64,
// AdamW with decay ranges and its bf16 copy, the embedding scatter. Exits 1 when a check fails.
#include "kernels.cpp"
#include <random>
#include <string>
std::mt19937 rng(42);
std::vector<float> rnd(size_t n, float lo=-1, float hi=1) { std::uniform_real_distribution<float> d(lo, hi); std::vector<float> v(n); for (auto& x : v) x = d(rng); return v; }
double maxdiff(const std::vector<float>& a, const std::vector<float>& b) { double m = 0, s = 1; for (size_t i = 0; i < a.size(); i++) { m = std::max(m, (double)fabs(a[i]-b[i])); s = std::max(s, (double)fabs(b[i])); if (std::isnan(a[i])) return 1e30; } return m / s; }
int failures = 0;
void report(const char* name, double e, double tol) { if (!(e <= tol)) failures++; printf("%s %-50s %.2e (tol %.0e)\n", e <= tol ? "ok  " : "FAIL", name, e, tol); }

void attention(int B, int T, int H, int KH, int D) {
    int N = B*T; float scale = 1/sqrtf(D);
    auto q = rnd(N*H*D, -2, 2), k = rnd(N*KH*D, -2, 2), v = rnd(N*KH*D), dO = rnd(N*H*D);
    // reference (double)
    std::vector<float> out(N*H*D), lse(N*H), dq(N*H*D, 0), dk(N*KH*D, 0), dv(N*KH*D, 0);
    std::vector<double> dqd(N*H*D,0), dkd(N*KH*D,0), dvd(N*KH*D,0);
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) {
        int kh = h / (H/KH);
        for (int t = 0; t < T; t++) {
            const float* qr = &q[((b*T+t)*H+h)*D];
            std::vector<double> s(t+1); double m = -1e300;
            for (int j = 0; j <= t; j++) { double acc = 0; const float* kr = &k[((b*T+j)*KH+kh)*D]; for (int d = 0; d < D; d++) acc += (double)qr[d]*kr[d]; s[j] = acc*scale; m = std::max(m, s[j]); }
            double l = 0; for (int j = 0; j <= t; j++) l += exp(s[j]-m);
            double L = m + log(l); lse[(b*T+t)*H+h] = L;
            std::vector<double> o(D, 0), p(t+1);
            for (int j = 0; j <= t; j++) { p[j] = exp(s[j]-L); for (int d = 0; d < D; d++) o[d] += p[j]*v[((b*T+j)*KH+kh)*D+d]; }
            for (int d = 0; d < D; d++) out[((b*T+t)*H+h)*D+d] = o[d];
            const float* dor = &dO[((b*T+t)*H+h)*D];
            double delta = 0; for (int d = 0; d < D; d++) delta += dor[d]*o[d];
            for (int j = 0; j <= t; j++) {
                double dp = 0; for (int d = 0; d < D; d++) dp += dor[d]*(double)v[((b*T+j)*KH+kh)*D+d];
                double ds = p[j]*(dp - delta);
                for (int d = 0; d < D; d++) {
                    dvd[((b*T+j)*KH+kh)*D+d] += p[j]*dor[d];
                    dkd[((b*T+j)*KH+kh)*D+d] += ds*scale*qr[d];
                    dqd[((b*T+t)*H+h)*D+d] += ds*scale*k[((b*T+j)*KH+kh)*D+d];
                }
            }
        }
    }
    for (size_t i = 0; i < dq.size(); i++) dq[i] = dqd[i];
    for (size_t i = 0; i < dk.size(); i++) { dk[i] = dkd[i]; dv[i] = dvd[i]; }
    std::vector<float> gout(N*H*D, NAN), glse(N*H, NAN), delta(N*H, NAN), gdq(N*H*D, NAN), gdk(N*KH*D, NAN), gdv(N*KH*D, NAN);
    int tiles = (T + 15)/16;
    if (D <= 64) launch(flash_attention_forward_d64_f32, {(unsigned)tiles,(unsigned)H,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), gout.data(), glse.data(), T, H, KH, D, scale); else launch(flash_attention_forward_d128_f32, {(unsigned)tiles,(unsigned)H,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), gout.data(), glse.data(), T, H, KH, D, scale);
    char name[200];
    snprintf(name, 200, "attention fwd out B%d T%d H%d/%d D%d", B,T,H,KH,D); report(name, maxdiff(gout, out), 1e-5);
    snprintf(name, 200, "attention fwd lse"); report(name, maxdiff(glse, lse), 1e-5);
    long rows = N*H;
    launch(attention_backward_delta_f32, {(unsigned)((rows+7)/8),1,1}, {256,1,1}, (const float*)out.data(), (const float*)dO.data(), delta.data(), (i64)rows, D);
    if (D <= 64) launch(flash_attention_backward_dq_d64_f32, {(unsigned)tiles,(unsigned)H,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), (const float*)dO.data(), (const float*)lse.data(), (const float*)delta.data(), gdq.data(), T, H, KH, D, scale); else launch(flash_attention_backward_dq_d128_f32, {(unsigned)tiles,(unsigned)H,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), (const float*)dO.data(), (const float*)lse.data(), (const float*)delta.data(), gdq.data(), T, H, KH, D, scale);
    if (D <= 64) launch(flash_attention_backward_dkdv_d64_f32, {(unsigned)tiles,(unsigned)KH,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), (const float*)dO.data(), (const float*)lse.data(), (const float*)delta.data(), gdk.data(), gdv.data(), T, H, KH, D, scale); else launch(flash_attention_backward_dkdv_d128_f32, {(unsigned)tiles,(unsigned)KH,(unsigned)B}, {128,1,1}, (const float*)q.data(), (const float*)k.data(), (const float*)v.data(), (const float*)dO.data(), (const float*)lse.data(), (const float*)delta.data(), gdk.data(), gdv.data(), T, H, KH, D, scale);
    report("attention bwd dq", maxdiff(gdq, dq), 5e-5);
    report("attention bwd dk", maxdiff(gdk, dk), 5e-5);
    report("attention bwd dv", maxdiff(gdv, dv), 5e-5);
}

void logprobs(int R, int V) {
    auto x = rnd(R*V, -8, 8); std::vector<int> tg(R); for (auto& t : tg) t = rng() % V;
    std::vector<unsigned short> low(R*V); std::vector<float> lp(R), ent(R), glp(R, NAN), gent(R, NAN), dl(R), grad(R*V);
    for (int r = 0; r < R; r++) {
        double m = -1e300; for (int i = 0; i < V; i++) m = std::max(m, (double)x[r*V+i]);
        double s = 0; for (int i = 0; i < V; i++) s += exp(x[r*V+i]-m);
        double L = m + log(s); lp[r] = x[r*V+tg[r]] - L;
        double e = 0; for (int i = 0; i < V; i++) { double p = exp(x[r*V+i]-L); e -= p*(x[r*V+i]-L); }
        ent[r] = e; dl[r] = r % 3 == 0 ? 0 : 0.5f - r*0.1f;
        for (int i = 0; i < V; i++) grad[r*V+i] = dl[r]*((i==tg[r]) - exp(x[r*V+i]-L));
    }
    launch(token_logprobs_f32, {(unsigned)R,1,1}, {1024,1,1}, (const float*)x.data(), (const int*)tg.data(), glp.data(), gent.data(), V);
    report("token_logprobs", maxdiff(glp, lp), 1e-5); report("token_logprobs entropy", maxdiff(gent, ent), 1e-5);
    launch(token_logprobs_backward_f32, {(unsigned)R,1,1}, {1024,1,1}, x.data(), (const int*)tg.data(), (const float*)dl.data(), (bf16*)low.data(), V);
    { double e = 0; for (int i = 0; i < R*V; i++) { unsigned u = (unsigned)low[i] << 16; float f; memcpy(&f, &u, 4); e = std::max(e, (double)fabs(f - x[i])); } report("logprobs bwd bf16 copy", e, 4e-3); }
    report("token_logprobs backward", maxdiff(x, grad), 1e-6);
}

void norms(int rows, int H) {
    auto x = rnd(rows*H, -3, 3), dy = rnd(rows*H), w = rnd(H, 0.5, 1.5);
    std::vector<float> dx(rows*H), dw(H, 0), db(H, 0), rdx(rows*H), rdw(H, 0);
    std::vector<double> dwd(H,0), dbd(H,0), rdwd(H,0);
    for (int r = 0; r < rows; r++) {
        const float* xr = &x[r*H]; const float* g = &dy[r*H];
        double mean = 0; for (int i = 0; i < H; i++) mean += xr[i]; mean /= H;
        double var = 0; for (int i = 0; i < H; i++) var += (xr[i]-mean)*(xr[i]-mean); var /= H;
        double rstd = 1/sqrt(var + 1e-5), a = 0, c = 0;
        for (int i = 0; i < H; i++) { double xh = (xr[i]-mean)*rstd; a += g[i]*w[i]; c += g[i]*w[i]*xh; }
        a /= H; c /= H;
        for (int i = 0; i < H; i++) { double xh = (xr[i]-mean)*rstd; dx[r*H+i] = rstd*(g[i]*w[i] - a - xh*c); dwd[i] += g[i]*xh; dbd[i] += g[i]; }
        double ss = 0; for (int i = 0; i < H; i++) ss += (double)xr[i]*xr[i];
        double rr = 1/sqrt(ss/H + 1e-6), gx = 0; for (int i = 0; i < H; i++) gx += g[i]*w[i]*xr[i]; gx /= H;
        for (int i = 0; i < H; i++) { rdx[r*H+i] = rr*g[i]*w[i] - xr[i]*rr*rr*rr*gx; rdwd[i] += g[i]*xr[i]*rr; }
    }
    for (int i = 0; i < H; i++) { dw[i] = dwd[i] + 0.25f; db[i] = dbd[i] + 0.25f; rdw[i] = rdwd[i] + 0.25f; }
    int G = std::min(rows, 256);
    std::vector<float> part(G*2*H), gdx(rows*H, NAN), gdw(H, 0.25f), gdb(H, 0.25f), grdw(H, 0.25f);
    launch(layernorm_backward_f32, {(unsigned)G,1,1}, {256,1,1}, (const float*)x.data(), (const float*)w.data(), (const float*)dy.data(), gdx.data(), part.data(), rows, H, 1e-5f);
    launch(reduce_partials_f32, {(unsigned)((H+255)/256),1,1}, {256,1,1}, (const float*)part.data(), gdw.data(), G, H, 2*H);
    launch(reduce_partials_f32, {(unsigned)((H+255)/256),1,1}, {256,1,1}, (const float*)part.data()+H, gdb.data(), G, H, 2*H);
    report("layernorm bwd dx", maxdiff(gdx, dx), 2e-5); report("layernorm bwd dw", maxdiff(gdw, dw), 2e-5); report("layernorm bwd db", maxdiff(gdb, db), 2e-5);
    launch(rmsnorm_backward_f32, {(unsigned)G,1,1}, {256,1,1}, (const float*)x.data(), (const float*)w.data(), (const float*)dy.data(), gdx.data(), part.data(), rows, H, 1e-6f);
    launch(reduce_partials_f32, {(unsigned)((H+255)/256),1,1}, {256,1,1}, (const float*)part.data(), grdw.data(), G, H, H);
    report("rmsnorm bwd dx", maxdiff(gdx, rdx), 2e-5); report("rmsnorm bwd dw", maxdiff(grdw, rdw), 2e-5);
}

void misc() {
    int n = 5000, rows = 37, cols = 70;
    auto dy = rnd(rows*cols); std::vector<float> db(cols, 1), gdb(cols, 1);
    for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) db[c] += dy[r*cols+c];
    launch(column_sum_accumulate_f32, {(unsigned)((cols+31)/32), 2, 1}, {32,8,1}, (const float*)dy.data(), gdb.data(), (i64)rows, cols);
    report("column sum", maxdiff(gdb, db), 1e-6);
    auto x = rnd(n); std::vector<double> part(513);
    double ref = 0; for (float v : x) ref += (double)v*v;
    launch(sum_squares_partial_f32, {7,1,1}, {256,1,1}, (const float*)x.data(), part.data(), (i64)n);
    launch(sum_squares_final, {1,1,1}, {512,1,1}, (const double*)part.data(), part.data()+512, 7);
    report("sum squares", fabs(part[512]-ref)/ref, 1e-12);
    // adamw with ranges
    auto p = rnd(n), g = rnd(n), m = rnd(n, 0, .1f), v = rnd(n, 0, .01f);
    auto P = p, M = m, Vv = v; std::vector<unsigned short> low(n);
    std::vector<i64> ranges = {0, 1000, 2500, 4000, 4999, 5000};
    float lr = 3e-3, b1 = .9, b2 = .95, eps = 1e-8, wd = .1; int step = 3;
    double stepSize = lr / (1 - pow(b1, step)), bc2 = sqrt(1 - pow(b2, step));
    for (int i = 0; i < n; i++) {
        bool dec = (i < 1000) || (i >= 2500 && i < 4000) || i == 4999;
        double pp = P[i]; if (dec) pp *= (1 - lr*wd);
        double mm = M[i] + (1-b1)*(g[i]-M[i]); double vv = b2*Vv[i] + (1-b2)*(double)g[i]*g[i];
        pp -= stepSize * mm / (sqrt(vv)/bc2 + eps); P[i] = pp; M[i] = mm; Vv[i] = vv;
    }
    launch(adamw_f32, {4,1,1}, {256,1,1}, p.data(), (const float*)g.data(), m.data(), v.data(), (bf16*)low.data(), (i64)n, (const i64*)ranges.data(), 3, (float)(1 - 0.003*0.1), (float)(1 - 0.9), b2, (float)(1 - 0.95), eps, (float)stepSize, (float)bc2);
    report("adamw p", maxdiff(p, P), 1e-6); report("adamw m", maxdiff(m, M), 1e-7); report("adamw v", maxdiff(v, Vv), 1e-7);
    double e = 0; for (int i = 0; i < n; i++) { unsigned u = (unsigned)low[i] << 16; float f; memcpy(&f, &u, 4); e = std::max(e, (double)fabs(f - p[i]) / fabs(p[i])); }
    report("adamw bf16 copy", e, 4e-3);
    // embedding backward
    int V = 20, Hd = 40, T = 100; std::vector<int> ids(T); for (auto& i : ids) i = rng() % 5;
    auto dyE = rnd(T*Hd); std::vector<float> tab(V*Hd, 0), gtab(V*Hd, 0);
    for (int t = 0; t < T; t++) for (int h = 0; h < Hd; h++) tab[ids[t]*Hd+h] += dyE[t*Hd+h];
    launch(embedding_backward_f32, {1, (unsigned)T, 1}, {256,1,1}, (const int*)ids.data(), (const float*)dyE.data(), gtab.data(), T, Hd);
    report("embedding backward", maxdiff(gtab, tab), 1e-5);
}

// `test attention` runs the attention cases only.
int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IONBF, 0);
    if (argc > 1 && std::string(argv[1]) == "attention") {
        attention(1, 5, 2, 1, 16); attention(2, 37, 4, 2, 64); attention(1, 50, 2, 2, 128); attention(1, 40, 3, 3, 80);
        return failures > 0;
    }
    logprobs(5, 3000); logprobs(2, 17);
    misc();
    norms(3, 64); norms(300, 200);
    attention(1, 5, 2, 1, 16);
    attention(2, 37, 4, 2, 64);
    attention(1, 50, 2, 2, 128);
    attention(1, 40, 3, 3, 80);
    return failures > 0;
}
