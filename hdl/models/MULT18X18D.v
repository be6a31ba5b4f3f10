// MULT18X18D: the microscopiq project's behavioural model of the Lattice ECP5 18x18 multiplier
// primitive, for simulation only (Icarus Verilog, Verilator). Yosys' ECP5 library ships only a
// blackbox of it (share/ecp5/cells_bb.v), with no simulation model; synthesis never reads this file.
//
// It models the subset microscopiq.hdl.dsp_mult.DspMult instantiates (docs/hardware.md, "DSP build"):
// * the A and B input registers and the output register, each either bypassed ("NONE") or clocked by
//   CLK0, with its clock enable CE0..CE3 and its reset RST0..RST3 chosen by REG_*_CE / REG_*_RST;
// * RESETMODE "SYNC": a register's reset clears it at the clock edge and overrides its enable (as
//   the fabric's synchronous-clear flip-flops do);
// * P = A * B over 18-bit operands, each signed when SIGNEDA / SIGNEDB is 1 (those must be
//   constant: the model reads them unregistered);
// * power-on value 0 of every register; GSR has no effect here (the model has no global reset net).
// The pipeline register, the C input, the shift chains (SOURCEA / SOURCEB must be 0), the cascade,
// CLK1..CLK3 and the outputs other than P are not modelled, and are not ports of this model: an
// instance that connects them does not elaborate. Parameter values outside the subset stop the
// simulation with $fatal at time 0.
`default_nettype none
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off UNUSEDSIGNAL */
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE",
    parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE",
    parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE",
    parameter REG_INPUTC_CE = "CE0",
    parameter REG_INPUTC_RST = "RST0",
    parameter REG_PIPELINE_CLK = "NONE",
    parameter REG_PIPELINE_CE = "CE0",
    parameter REG_PIPELINE_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE",
    parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0",
    parameter CLK0_DIV = "ENABLED",
    parameter CLK1_DIV = "ENABLED",
    parameter CLK2_DIV = "ENABLED",
    parameter CLK3_DIV = "ENABLED",
    parameter HIGHSPEED_CLK = "NONE",
    parameter GSR = "ENABLED",
    parameter CAS_MATCH_REG = "FALSE",
    parameter SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED",
    parameter RESETMODE = "SYNC"
) (
    input wire A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input wire B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input wire C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input wire SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input wire CLK3, CLK2, CLK1, CLK0,
    input wire CE3, CE2, CE1, CE0,
    input wire RST3, RST2, RST1, RST0,
    output wire P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [3:0] ce = {CE3, CE2, CE1, CE0};
    wire [3:0] rst = {RST3, RST2, RST1, RST0};

    // "CEn" / "RSTn" -> n; anything else -> 4 (refused below).
    function automatic [2:0] index_of(input [8*4-1:0] name);
        case (name)
            "CE0", "RST0": index_of = 3'd0;
            "CE1", "RST1": index_of = 3'd1;
            "CE2", "RST2": index_of = 3'd2;
            "CE3", "RST3": index_of = 3'd3;
            default: index_of = 3'd4;
        endcase
    endfunction

    localparam [2:0] CE_A = index_of(REG_INPUTA_CE), RST_A = index_of(REG_INPUTA_RST);
    localparam [2:0] CE_B = index_of(REG_INPUTB_CE), RST_B = index_of(REG_INPUTB_RST);
    localparam [2:0] CE_P = index_of(REG_OUTPUT_CE), RST_P = index_of(REG_OUTPUT_RST);
    localparam REGA = REG_INPUTA_CLK == "CLK0", REGB = REG_INPUTB_CLK == "CLK0", REGP = REG_OUTPUT_CLK == "CLK0";

    initial begin
        if (!REGA && REG_INPUTA_CLK != "NONE") $fatal(1, "MULT18X18D model: REG_INPUTA_CLK must be NONE or CLK0, not %0s", REG_INPUTA_CLK);
        if (!REGB && REG_INPUTB_CLK != "NONE") $fatal(1, "MULT18X18D model: REG_INPUTB_CLK must be NONE or CLK0, not %0s", REG_INPUTB_CLK);
        if (!REGP && REG_OUTPUT_CLK != "NONE") $fatal(1, "MULT18X18D model: REG_OUTPUT_CLK must be NONE or CLK0, not %0s", REG_OUTPUT_CLK);
        if (REG_INPUTC_CLK != "NONE") $fatal(1, "MULT18X18D model: the C input register is not modelled (REG_INPUTC_CLK %0s)", REG_INPUTC_CLK);
        if (REG_PIPELINE_CLK != "NONE") $fatal(1, "MULT18X18D model: the pipeline register is not modelled (REG_PIPELINE_CLK %0s)", REG_PIPELINE_CLK);
        if (CE_A > 3 || CE_B > 3 || CE_P > 3) $fatal(1, "MULT18X18D model: REG_*_CE must be CE0..CE3");
        if (RST_A > 3 || RST_B > 3 || RST_P > 3) $fatal(1, "MULT18X18D model: REG_*_RST must be RST0..RST3");
        if (RESETMODE != "SYNC") $fatal(1, "MULT18X18D model: RESETMODE must be SYNC, not %0s", RESETMODE);
        if (HIGHSPEED_CLK != "NONE") $fatal(1, "MULT18X18D model: HIGHSPEED_CLK must be NONE, not %0s", HIGHSPEED_CLK);
        if (MULT_BYPASS != "DISABLED") $fatal(1, "MULT18X18D model: MULT_BYPASS must be DISABLED, not %0s", MULT_BYPASS);
        if (CAS_MATCH_REG != "FALSE") $fatal(1, "MULT18X18D model: CAS_MATCH_REG must be FALSE, not %0s", CAS_MATCH_REG);
        if (SOURCEB_MODE != "B_SHIFT") $fatal(1, "MULT18X18D model: SOURCEB_MODE must be B_SHIFT, not %0s", SOURCEB_MODE);
    end

    reg [17:0] reg_a = 18'd0, reg_b = 18'd0;
    reg [35:0] reg_p = 36'd0;
    wire [17:0] op_a = REGA ? reg_a : a;
    wire [17:0] op_b = REGB ? reg_b : b;
    wire signed [18:0] wide_a = {SIGNEDA & op_a[17], op_a};
    wire signed [18:0] wide_b = {SIGNEDB & op_b[17], op_b};
    wire signed [37:0] full = wide_a * wide_b;
    wire [35:0] product = full[35:0];

    always @(posedge CLK0) begin
        if (SOURCEA || SOURCEB) $fatal(1, "MULT18X18D model: the shift inputs (SOURCEA, SOURCEB) are not modelled and must be 0");
        if (rst[RST_A[1:0]]) reg_a <= 18'd0; else if (ce[CE_A[1:0]]) reg_a <= a;
        if (rst[RST_B[1:0]]) reg_b <= 18'd0; else if (ce[CE_B[1:0]]) reg_b <= b;
        if (rst[RST_P[1:0]]) reg_p <= 36'd0; else if (ce[CE_P[1:0]]) reg_p <= product;
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = REGP ? reg_p : product;
endmodule
/* verilator lint_on UNUSEDSIGNAL */
/* verilator lint_on UNUSEDPARAM */
`default_nettype wire
