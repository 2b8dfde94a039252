// The keyed-sum benchmark job on Apache Flink, for `weir bench` to run against weir on the
// same job in the same run.
//
// A bounded source of n records (key = "k" + i % keys, value = i) for i in 0..n, keyed by
// key; a keyed ValueState holds (count, sum) per key, and one `key,count,sum` line per key is
// written at the end of input. The job runs in STREAMING mode (so checkpoints are taken) on a
// local MiniCluster inside this JVM, at parallelism 1.
//
// Usage: java -cp <flink jars>:<this class> KeyedSum <n> <keys> <interval|off> <hashmap|rocksdb>
//        <output file> <checkpoint dir> [<flink option>=<value> ...]
// with the interval as Flink writes durations ("1 s", "100 ms"); any further arguments are
// Flink configuration options, set last (for experiments: "execution.checkpointing.incremental=true").
//
// Prints one line on stdout:
//   flink-keyed-sum records_per_second=<x> net_runtime_ms=<y> peak_rss_kib=<z> flink_version=<v>
// where net_runtime_ms is JobExecutionResult#getNetRuntime (the job alone, not the JVM's or
// the MiniCluster's start) and peak_rss_kib is this JVM's peak resident memory (0 if unknown).

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.List;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.CoreOptions;
import org.apache.flink.configuration.ExecutionOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.runtime.util.EnvironmentInformation;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;
import org.apache.flink.util.TimeUtils;

public class KeyedSum {
    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: KeyedSum <n> <keys> <interval|off> <hashmap|rocksdb> <output file>"
                    + " <checkpoint dir> [<flink option>=<value> ...]");
            System.exit(2);
        }
        long n = Long.parseLong(args[0]);
        long keys = Long.parseLong(args[1]);
        String interval = args[2];
        String backend = args[3];
        String output = args[4];
        Path checkpoints = Paths.get(args[5]).toAbsolutePath();

        Configuration config = new Configuration();
        config.set(ExecutionOptions.RUNTIME_MODE, RuntimeExecutionMode.STREAMING);
        config.set(CoreOptions.DEFAULT_PARALLELISM, 1);
        config.set(StateBackendOptions.STATE_BACKEND, backend);
        if (!interval.equals("off")) {
            config.set(CheckpointingOptions.CHECKPOINTING_INTERVAL, TimeUtils.parseDuration(interval));
            config.set(CheckpointingOptions.CHECKPOINTING_CONSISTENCY_MODE, CheckpointingMode.EXACTLY_ONCE);
            config.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            config.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, checkpoints.toUri().toString());
            config.set(CheckpointingOptions.CHECKPOINTING_TIMEOUT, Duration.ofMinutes(10));
        }
        for (int i = 6; i < args.length; i++) {
            String[] option = args[i].split("=", 2);
            if (option.length != 2) {
                System.err.println("not a Flink option=value: " + args[i]);
                System.exit(2);
            }
            config.setString(option[0].trim(), option[1].trim());
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(config);

        TypeInformation<Tuple2<String, Long>> record = Types.TUPLE(Types.STRING, Types.LONG);
        env.fromSequence(0, n - 1)
                .name("source")
                .map(i -> Tuple2.of("k" + (i % keys), i))
                .returns(record)
                .name("to-record")
                .keyBy(r -> r.f0, Types.STRING)
                .process(new Sum())
                .uid("sum")
                .name("sum")
                .sinkTo(new LineFileSink(output))
                .name("sink");

        JobExecutionResult result = env.execute("keyed-sum");
        long netMillis = result.getNetRuntime();
        double recordsPerSecond = n / (Math.max(netMillis, 1) / 1000.0);
        System.out.printf(
                "flink-keyed-sum records_per_second=%.0f net_runtime_ms=%d peak_rss_kib=%d flink_version=%s%n",
                recordsPerSecond, netMillis, peakRssKib(), EnvironmentInformation.getVersion());
    }

    /** Counts and sums each key's values; emits the totals when the end of input's watermark fires its timer. */
    public static class Sum extends KeyedProcessFunction<String, Tuple2<String, Long>, String> {
        private transient ValueState<Tuple2<Long, Long>> totals;

        @Override
        public void open(org.apache.flink.api.common.functions.OpenContext context) {
            totals = getRuntimeContext()
                    .getState(new ValueStateDescriptor<>("count-and-sum", Types.TUPLE(Types.LONG, Types.LONG)));
        }

        @Override
        public void processElement(Tuple2<String, Long> record, Context ctx, Collector<String> out) throws Exception {
            Tuple2<Long, Long> current = totals.value();
            if (current == null) {
                // The final watermark (Long.MAX_VALUE) arrives once the bounded source ends.
                ctx.timerService().registerEventTimeTimer(Long.MAX_VALUE);
                totals.update(Tuple2.of(1L, record.f1));
            } else {
                totals.update(Tuple2.of(current.f0 + 1, current.f1 + record.f1));
            }
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<String> out) throws Exception {
            Tuple2<Long, Long> current = totals.value();
            out.collect(ctx.getCurrentKey() + "," + current.f0 + "," + current.f1);
        }
    }

    /** Writes each line to one local file (the job runs at parallelism 1). */
    public static class LineFileSink implements Sink<String> {
        private final String path;

        LineFileSink(String path) {
            this.path = path;
        }

        @Override
        public SinkWriter<String> createWriter(WriterInitContext context) throws IOException {
            BufferedWriter writer = Files.newBufferedWriter(Paths.get(path), StandardCharsets.UTF_8);
            return new SinkWriter<String>() {
                @Override
                public void write(String line, Context context) throws IOException {
                    writer.write(line);
                    writer.newLine();
                }

                @Override
                public void flush(boolean endOfInput) throws IOException {
                    writer.flush();
                }

                @Override
                public void close() throws IOException {
                    writer.close();
                }
            };
        }
    }

    /** This JVM's peak resident memory (VmHWM), in KiB; 0 where /proc is not there. */
    private static long peakRssKib() {
        try {
            List<String> lines = Files.readAllLines(Paths.get("/proc/self/status"));
            for (String line : lines) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (IOException | NumberFormatException e) {
            // Not Linux: report 0.
        }
        return 0;
    }
}
