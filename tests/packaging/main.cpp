// Uses a little of everything that needs linking (threads) or is easy to get wrong when
// installed (the umbrella header and its includes). Exits 0 and prints one line when all is well.
#include <lamina/lamina.hpp>

#include <cstdio>

int main() {
  lamina::SamplerParams params;
  params.temperature = 0.0f;
  lamina::Result<lamina::Sampler> sampler = lamina::Sampler::create(params, 3);
  const float logits[3] = {0.0f, 2.0f, 1.0f};
  if (!sampler || sampler->sample(logits) != 1) {
    std::fprintf(stderr, "consumer: the sampler gave a wrong answer\n");
    return 1;
  }
  lamina::ThreadPool pool(2);
  int ran[8] = {};
  lamina::parallel_for(pool, 8, [&](std::size_t i) { ran[i] = 1; });
  for (int r : ran) {
    if (r != 1) {
      std::fprintf(stderr, "consumer: the thread pool skipped a task\n");
      return 1;
    }
  }
  std::printf("lamina %s: consumer ok\n", LAMINA_VERSION_STRING);
  return 0;
}
