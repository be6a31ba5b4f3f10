// File-driven Icarus testbench of the generated accelerator top level: harness.cpp's twin, for the
// simulator that has no C++ model (microscopiq.tb.native builds and drives both; docs/verification.md
// says when to use which). Built with the design's Verilog:
//
//   iverilog -g2005 -s microscopiq_harness -DMICROSCOPIQ_TOP=<top> -Pmicroscopiq_harness.WEIGHTS_WIDTH=..
//            -Pmicroscopiq_harness.ACT_WIDTH=.. -Pmicroscopiq_harness.RESULT_WIDTH=.. <design.v> harness.v
//   vvp -n harness.vvp +weights_file=WEIGHTS +act_file=ACT +results_file=RESULTS +results=N +max_cycles=C
//       [+idle_weights=P] [+idle_act=P] [+backpressure=P]
//   vvp -n harness.vvp +pauses=P +count=N       (prints N draws of P as 0/1 characters)
//
// Everything harness.cpp's header says holds here, with plusargs for its options and files: the
// same beat record files (tdata as ceil(width/32) little-endian 32-bit words, then a 32-bit tlast
// word), the same pause patterns P (none, cycle:BITS, random:PROBABILITY:SEED drawn from Python's
// MT19937), the same stream behaviour, reset, cycle counting and drain window, the same one-line
// JSON statistics on stdout (without the seconds: Python times the vvp process). A failure prints
// "harness: MESSAGE" on stderr ("harness: timeout: ..." past +max_cycles, so a stuck run never
// hangs) and ends through $fatal, vvp's non-zero exit status. One check more than harness.cpp's,
// as Icarus is four-state: a result beat with an X or Z bit is an error.

// One pause pattern: draw() gives the next cycle's pause bit.
module microscopiq_pauses;
    localparam N = 624, M = 397;
    reg [31:0] mt [0:N-1];
    integer index;
    integer mode;                   // 0 none, 1 cycle, 2 random
    reg [8*64-1:0] bits;            // the cycle's characters, the first draw in the top byte used
    integer length, position;
    real probability;

    task setup(input [8*128-1:0] spec);
        reg [8*128-1:0] rest;
        reg [63:0] seed;
        integer i;
        begin
            mode = 0;
            position = 0;
            if (spec == "none") begin
                mode = 0;
            end else if ($sscanf(spec, "cycle:%s", rest) == 1) begin
                mode = 1;
                bits = rest;
                length = 0;
                for (i = 0; i < 64; i = i + 1) begin
                    if (rest[8 * i +: 8] == "0" || rest[8 * i +: 8] == "1") length = i + 1;
                    else if (rest[8 * i +: 8] != 0) fail_usage(spec);
                end
                if (length == 0 || rest[8 * length +: 8] != 0) fail_usage(spec);
            end else if ($sscanf(spec, "random:%f:%d", probability, seed) == 2) begin
                mode = 2;
                // random.seed(int): the 32-bit words of the seed, least significant first.
                init_by_array(seed[31:0], seed[63:32], seed[63:32] != 0 ? 2 : 1);
            end else begin
                fail_usage(spec);
            end
        end
    endtask

    task fail_usage(input [8*128-1:0] spec);
        begin
            $fdisplay(32'h8000_0002, "harness: pause pattern must be none, cycle:BITS or random:P:SEED, not %0s", spec);
            $fatal(0);
        end
    endtask

    task draw(output pause);
        reg [31:0] a, b;
        begin
            case (mode)
                1: begin
                    // Characters are right-aligned: the first of `length` sits in byte length-1.
                    pause = bits[8 * (length - 1 - position) +: 8] == "1";
                    position = (position + 1) % length;
                end
                2: begin                    // genrand_res53() < probability, exact in doubles
                    next(a);
                    next(b);
                    pause = ((a >> 5) * 67108864.0 + (b >> 6)) * (1.0 / 9007199254740992.0) < probability;
                end
                default: pause = 0;
            endcase
        end
    endtask

    task init_genrand(input [31:0] s);
        begin
            mt[0] = s;
            for (index = 1; index < N; index = index + 1)
                mt[index] = 32'd1812433253 * (mt[index - 1] ^ (mt[index - 1] >> 30)) + index;
        end
    endtask

    task init_by_array(input [31:0] key0, input [31:0] key1, input integer key_length);
        integer i, j, k;
        reg [31:0] key;
        begin
            init_genrand(32'd19650218);
            i = 1;
            j = 0;
            for (k = (N > key_length ? N : key_length); k > 0; k = k - 1) begin
                key = j ? key1 : key0;
                mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 32'd1664525)) + key + j;
                i = i + 1;
                j = j + 1;
                if (i >= N) begin
                    mt[0] = mt[N - 1];
                    i = 1;
                end
                if (j >= key_length) j = 0;
            end
            for (k = N - 1; k > 0; k = k - 1) begin
                mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 32'd1566083941)) - i;
                i = i + 1;
                if (i >= N) begin
                    mt[0] = mt[N - 1];
                    i = 1;
                end
            end
            mt[0] = 32'h8000_0000;
            index = N;
        end
    endtask

    function [31:0] twist(input [31:0] upper, input [31:0] lower, input [31:0] far);
        reg [31:0] y;
        begin
            y = (upper & 32'h8000_0000) | (lower & 32'h7fff_ffff);
            twist = far ^ (y >> 1) ^ (y[0] ? 32'h9908_b0df : 32'h0);
        end
    endfunction

    task next(output [31:0] value);
        integer k;
        reg [31:0] y;
        begin
            if (index >= N) begin
                for (k = 0; k < N - M; k = k + 1) mt[k] = twist(mt[k], mt[k + 1], mt[k + M]);
                for (k = N - M; k < N - 1; k = k + 1) mt[k] = twist(mt[k], mt[k + 1], mt[k + M - N]);
                mt[N - 1] = twist(mt[N - 1], mt[0], mt[M - 1]);
                index = 0;
            end
            y = mt[index];
            index = index + 1;
            y = y ^ (y >> 11);
            y = y ^ ((y << 7) & 32'h9d2c_5680);
            y = y ^ ((y << 15) & 32'hefc6_0000);
            value = y ^ (y >> 18);
        end
    endtask
endmodule

// One AXI4-Stream source: offers the records of a file on tdata/tvalid/tlast, read as they are due.
module microscopiq_source #(parameter WIDTH = 32) (
    output reg [WIDTH-1:0] tdata,
    output reg tvalid,
    output reg tlast
);
    localparam WORDS = (WIDTH + 31) / 32;
    localparam RECORD = 4 * (WORDS + 1);     // bytes
    microscopiq_pauses pauses();
    integer file, beats, sent, loaded;
    reg [32 * WORDS - 1:0] record;
    reg record_last;

    task open(input [8*1024-1:0] path, input [8*128-1:0] pause_spec);
        integer size, status;
        begin
            file = $fopen(path, "rb");
            if (file == 0) begin
                $fdisplay(32'h8000_0002, "harness: cannot open %0s", path);
                $fatal(0);
            end
            status = $fseek(file, 0, 2);
            size = $ftell(file);
            status = $fseek(file, 0, 0);
            if (size % RECORD) begin
                $fdisplay(32'h8000_0002, "harness: %0s is not a whole number of %0d-byte beat records", path, RECORD);
                $fatal(0);
            end
            beats = size / RECORD;
            sent = 0;
            loaded = -1;
            tvalid = 0;
            tlast = 0;
            tdata = 0;
            pauses.setup(pause_spec);
        end
    endtask

    // The record `sent`, read from the file the first time it is offered (records go in order).
    task load;
        integer byte_index;
        reg [31:0] tail;
        begin
            for (byte_index = 0; byte_index < 4 * WORDS; byte_index = byte_index + 1)
                record[8 * byte_index +: 8] = $fgetc(file);
            tail = $fgetc(file);
            tail = tail | ($fgetc(file) << 8) | ($fgetc(file) << 16) | ($fgetc(file) << 24);
            record_last = tail[0];
            loaded = sent;
        end
    endtask

    // After a rising edge on which the beat on offer was (or was not) taken.
    task after_edge(input handshake);
        reg pause;
        begin
            if (handshake) sent = sent + 1;
            pauses.draw(pause);
            if (!(tvalid && !handshake)) begin      // a valid beat stays until it is taken
                if (!pause && sent < beats) begin
                    if (loaded != sent) load;
                    tdata = record[WIDTH-1:0];
                    tlast = record_last;
                    tvalid = 1;
                end else begin
                    tvalid = 0;
                end
            end
        end
    endtask
endmodule

module microscopiq_harness;
    parameter WEIGHTS_WIDTH = 32;
    parameter ACT_WIDTH = 64;
    parameter RESULT_WIDTH = 64;
    localparam RESULT_WORDS = (RESULT_WIDTH + 31) / 32;
    localparam RESET_CYCLES = 4, SETTLE_CYCLES = 2;
    // Cycles every stream stays idle after the last result beat due: a beat arriving in it is extra.
    localparam DRAIN_CYCLES = 50;

    reg clk = 0, rst = 1, result_ready = 1;
    wire [WEIGHTS_WIDTH-1:0] weights_data;
    wire weights_valid, weights_last, weights_ready;
    wire [ACT_WIDTH-1:0] act_data;
    wire act_valid, act_last, act_ready;
    wire [RESULT_WIDTH-1:0] result_data;
    wire result_valid, result_last;

    microscopiq_source #(.WIDTH(WEIGHTS_WIDTH)) weights(weights_data, weights_valid, weights_last);
    microscopiq_source #(.WIDTH(ACT_WIDTH)) act(act_data, act_valid, act_last);
    microscopiq_pauses sink_pauses();

    `MICROSCOPIQ_TOP dut (
        .clk(clk), .rst(rst),
        .s_axis_weights_tdata(weights_data), .s_axis_weights_tvalid(weights_valid),
        .s_axis_weights_tlast(weights_last), .s_axis_weights_tready(weights_ready),
        .s_axis_act_tdata(act_data), .s_axis_act_tvalid(act_valid),
        .s_axis_act_tlast(act_last), .s_axis_act_tready(act_ready),
        .m_axis_result_tdata(result_data), .m_axis_result_tvalid(result_valid),
        .m_axis_result_tlast(result_last), .m_axis_result_tready(result_ready)
    );

    reg [8*1024-1:0] weights_path, act_path, results_path;
    reg [8*128-1:0] idle_weights, idle_act, backpressure;
    reg [63:0] due, max_cycles, count, cycle, first_cycle, received, done_at;
    reg signed [63:0] first_weights, last_result;
    reg done, pause, weights_hs, act_hs, result_hs;
    reg [31:0] out_word;
    integer results, word;

    // One rising edge, the design settled after it.
    task rising_edge;
        begin
            clk = 1;
            #1;
            cycle = cycle + 1;
        end
    endtask

    task fail(input [8*2048-1:0] message);
        begin
            $fdisplay(32'h8000_0002, "harness: %0s", message);
            $fatal(0);
        end
    endtask

    task check_taken(input [8*32-1:0] name, input integer sent, input integer beats);
        reg [8*2048-1:0] message;
        begin
            if (sent != beats) begin
                $sformat(message, "%0s: %0d of %0d beats taken", name, sent, beats);
                fail(message);
            end
        end
    endtask

    // `+pauses=P +count=N` prints N draws of pattern P (the tests compare them with the cocotb
    // suite's pause generators).
    task print_pauses;
        begin
            if (!$value$plusargs("count=%d", count)) fail("usage: +pauses=P +count=N");
            sink_pauses.setup(backpressure);
            while (count > 0) begin
                sink_pauses.draw(pause);
                $write("%0d", pause);
                count = count - 1;
            end
            $write("\n");
            $finish(0);
        end
    endtask

    task parse;
        begin
            idle_weights = "none";
            idle_act = "none";
            backpressure = "none";
            if ($value$plusargs("pauses=%s", backpressure)) print_pauses;
            if (!$value$plusargs("weights_file=%s", weights_path) || !$value$plusargs("act_file=%s", act_path)
                || !$value$plusargs("results_file=%s", results_path) || !$value$plusargs("results=%d", due)
                || !$value$plusargs("max_cycles=%d", max_cycles) || due == 0 || max_cycles == 0)
                fail({"usage: vvp harness.vvp +weights_file=F +act_file=F +results_file=F +results=N +max_cycles=C ",
                      "[+idle_weights=P] [+idle_act=P] [+backpressure=P]"});
            if ($value$plusargs("idle_weights=%s", idle_weights)) ;
            if ($value$plusargs("idle_act=%s", idle_act)) ;
            if ($value$plusargs("backpressure=%s", backpressure)) ;
        end
    endtask

    initial begin : run
        reg [8*2048-1:0] message;
        parse;
        weights.open(weights_path, idle_weights);
        act.open(act_path, idle_act);
        sink_pauses.setup(backpressure);
        results = $fopen(results_path, "wb");
        if (results == 0) fail({"cannot write ", results_path});

        // Synchronous reset, sources idle and the sink ready, as the cocotb TB does it.
        cycle = 0;
        #1;
        repeat (RESET_CYCLES) begin
            rising_edge;
            clk = 0;
            #1;
        end
        rst = 0;
        #1;
        repeat (SETTLE_CYCLES) begin
            rising_edge;
            clk = 0;
            #1;
        end

        first_cycle = cycle;
        first_weights = -1;
        last_result = -1;
        received = 0;
        done = 0;
        weights.after_edge(0);
        act.after_edge(0);
        sink_pauses.draw(pause);
        result_ready = !pause;
        #1;
        begin : run_loop
        forever begin
            if (cycle - first_cycle >= max_cycles) begin
                $sformat(message, {"timeout: %0d cycles simulated, %0d of %0d result beats, %0d of %0d ",
                                   "weight beats and %0d of %0d activation beats taken"},
                         cycle - first_cycle, received, due, weights.sent, weights.beats, act.sent, act.beats);
                fail(message);
            end
            // Handshakes are sampled from the values the rising edge sees.
            weights_hs = weights_valid && weights_ready;
            act_hs = act_valid && act_ready;
            result_hs = result_valid && result_ready;
            if (result_hs) begin
                // Icarus is four-state: a result bit the design left undefined is an error here
                // (Verilator would have made it 0 or 1).
                if (^{result_data, result_last} === 1'bx) begin
                    $sformat(message, "result beat %0d holds X or Z bits: %b", received + 1, result_data);
                    fail(message);
                end
                for (word = 0; word < RESULT_WORDS; word = word + 1) begin
                    out_word = result_data >> (32 * word);
                    $fwrite(results, "%u", out_word);
                end
                $fwrite(results, "%u", {31'b0, result_last});
                received = received + 1;
            end
            rising_edge;
            if (weights_hs && first_weights < 0) first_weights = cycle;
            if (result_hs) last_result = cycle;
            if (received > due) begin
                $sformat(message, "result beat %0d arrived, only %0d are due", received, due);
                fail(message);
            end
            if (!done && received == due) begin
                done = 1;
                done_at = cycle;
            end
            if (done && cycle - done_at >= DRAIN_CYCLES) disable run_loop;
            weights.after_edge(weights_hs);
            act.after_edge(act_hs);
            if (done) result_ready = 1;
            else begin
                sink_pauses.draw(pause);
                result_ready = !pause;
            end
            clk = 0;
            #1;
        end
        end
        check_taken("s_axis_weights", weights.sent, weights.beats);
        check_taken("s_axis_act", act.sent, act.beats);
        $fclose(results);
        $display("{\"cycles\": %0d, \"first_weights\": %0d, \"last_result\": %0d, \"simulated_cycles\": %0d}",
                 last_result - first_weights + 1, first_weights, last_result, cycle - first_cycle);
        $finish(0);
    end
endmodule
