# Chart of a soak run (scripts/soak.sh): RSS, CPU, connections, p99 latency and failed
# transactions over time, the forced hang marked.
#   gnuplot -e "csv='soak.csv'; png='soak.png'; hang_t=900; title='…'" scripts/soak_chart.gnuplot
# CSV columns (scripts/soak.ts): t_s,rss_mb,cpu_pct,fds,threads,connections,workers_up,p50_ms,
# p99_ms,p99_persistent_ms,tx_ok,tx_failed_hung,tx_failed_other,reloads_ok,reloads_refused,hang,
# gen_lag_max_ms,js_heap_mb

if (!exists("csv")) csv = 'soak.csv'
if (!exists("png")) png = 'soak.png'
if (!exists("hang_t")) hang_t = -1
if (!exists("title")) title = 'sipedge soak'

set terminal pngcairo size 1200,1500 font ",10"
set output png
set datafile separator ","
set key top left opaque
set grid
set xlabel ""
set lmargin 12
set rmargin 4

# minutes on the x axis
tm(t) = t / 60.0
set xrange [0:*]

if (hang_t >= 0) {
  set arrow 1 from first tm(hang_t), graph 0 to first tm(hang_t), graph 1 nohead lc rgb "red" dt 2 lw 2
  set label 1 "hang" at first tm(hang_t), graph 0.93 offset 0.5,0 tc rgb "red"
}

set multiplot layout 5,1 title title
set ylabel "RSS (MB)"
plot csv using (tm($1)):2 every ::1 with lines lw 2 lc rgb "#1f77b4" title "sipedge RSS", \
     csv using (tm($1)):18 every ::1 with lines lw 1.5 lc rgb "#17becf" title "JS heaps in use (all isolates)"

set ylabel "CPU (% of a core)"
plot csv using (tm($1)):3 every ::1 with lines lw 1.5 lc rgb "#ff7f0e" title "sipedge CPU"

set ylabel "count"
plot csv using (tm($1)):6 every ::1 with lines lw 1.5 lc rgb "#2ca02c" title "connections", \
     csv using (tm($1)):4 every ::1 with lines lw 1.5 lc rgb "#9467bd" title "open fds"

set ylabel "p99 latency (ms)"
set logscale y
plot csv using (tm($1)):9 every ::1 with linespoints pt 7 ps 0.4 lc rgb "#d62728" title "p99 per 5 s (all)", \
     csv using (tm($1)):10 every ::1 with lines lw 1.5 lc rgb "#8c564b" title "p99 per 5 s (persistent connections)", \
     csv using (tm($1)):8 every ::1 with lines lc rgb "#7f7f7f" title "p50 per 5 s", \
     csv using (tm($1)):17 every ::1 with lines dt 3 lc rgb "#17becf" title "generator's own loop lag (max)"
unset logscale y

set ylabel "failed tx per 5 s"
set xlabel "minutes"
set yrange [0:*]
set style fill solid 0.8
set boxwidth 0.06
plot csv using (tm($1)):12 every ::1 with boxes lc rgb "#ff9896" title "on the hung worker's connections", \
     csv using (tm($1)):13 every ::1 with boxes lc rgb "#d62728" title "elsewhere"
unset multiplot
