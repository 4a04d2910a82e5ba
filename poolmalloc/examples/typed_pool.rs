//! A typed pool for one hot type, shared by threads through a `static`.
//!
//! `cargo run --release -p poolmalloc --example typed_pool`

use poolmalloc::TypedPool;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Particle {
    pos: [f32; 3],
    vel: [f32; 3],
    mass: f32,
    id: u32,
}

static PARTICLES: TypedPool<Particle> = TypedPool::new();

fn main() {
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut total = 0.0f64;
                for step in 0..1_000u32 {
                    // A batch of boxes made and dropped: the slots come back
                    // from this thread's cache, not from the allocator.
                    let batch: Vec<_> = (0..100u32)
                        .map(|i| {
                            let p = i as f32;
                            PARTICLES.alloc(Particle { pos: [p; 3], vel: [1.0; 3], mass: 2.0, id: t * 100_000 + i })
                        })
                        .collect();
                    total += batch.iter().map(|b| f64::from(b.mass * b.pos[0])).sum::<f64>();
                    assert_eq!(batch[99].id, t * 100_000 + 99, "step {step}");
                }
                total
            })
        })
        .collect();
    let sums: Vec<f64> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    let want = 1_000.0 * (0..100).map(|i| 2.0 * f64::from(i)).sum::<f64>();
    assert!(sums.iter().all(|&s| s == want), "{sums:?}");
    let s = PARTICLES.stats();
    println!("{s}");
    PARTICLES.trim();
}
