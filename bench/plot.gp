# bench/plot.gp -- the chart of bench/results/latest.png, drawn by bench/report.py:
#   gnuplot -e "ratios='R'; lat='L'; out='O.png'; nr=N; ns=M; ttl='T'" bench/plot.gp
# R: "label ratio met" rows (met: 1 yes, 0 no, 2 no target) -> bars with the 1.0 line
# L: one row per percentile, one column per (scenario, server) -> latency, log scale
set terminal pngcairo size 1200,900 font "DejaVu Sans,10"
set output out
set multiplot layout 2,1 title ttl font ",12"

# --- throughput: luahub / redis ------------------------------------------------
set title "Throughput ratio luahub ÷ redis (medians, log scale; > 1.0 = luahub faster; green met target, red missed, grey no target)"
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set logscale y 2
set yrange [0.125:*]
set format y "%g"
set xtics rotate by -25 scale 0
set key off
if (nr > 0) {
    plot ratios skip 1 using 0:2:($3 == 1 ? 0x2ca02c : ($3 == 0 ? 0xd62728 : 0x999999)):xtic(1) \
             with boxes lc rgb variable, \
         ratios skip 1 using 0:2:(sprintf($2 < 10 ? "%.2f" : "%.0f", $2)) with labels offset 0,0.8, \
         1 with lines lw 2 dt 2 lc rgb "black"
} else {
    unset logscale y
    set label 1 "no throughput ratios in this run" at graph 0.5, 0.5 center
    plot [0:1][0:1] 2 notitle
    unset label 1
}

# --- latency percentiles ----------------------------------------------------------
set title "Latency at a fixed rate, from intended send time (µs, log scale; lower is better)"
set logscale y 10
set yrange [10:*]
set ylabel "µs"
set xtics norotate
set style data histogram
set style histogram clustered gap 1
set key top left
if (ns > 0) {
    plot for [i=2:ns+1] lat using i:xtic(1) title columnheader(i)
} else {
    unset logscale y
    unset style data
    set label 1 "no latency scenarios in this run" at graph 0.5, 0.5 center
    plot [0:1][0:1] 2 notitle
}
unset multiplot
