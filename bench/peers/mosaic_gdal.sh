#!/bin/sh
# NDVI of an area from a mosaic with the GDAL command line (Debian's gdal-bin): pick the red
# and NIR bands into a VRT, gdalwarp them onto the UTM grid (bilinear, multithreaded), then
# gdal_calc.py. gdal_calc of GDAL 3.6 turns every pixel into NaN when --NoDataValue is nan and
# an input declares nodata, so the nodata is hidden and the formula masks DN 0 itself (as in
# bench/tools.py). The intermediates live next to OUT and are deleted.
#
#   sh bench/peers/mosaic_gdal.sh SRC OUT CRS LEFT,BOTTOM,RIGHT,TOP RES RED_BAND NIR_BAND
#
# SRC is a path or a GDAL path such as /vsicurl/http://host/mosaic.tif.
set -eu
src=$1 out=$2 crs=$3 bounds=$4 res=$5 red=$6 nir=$7
python=${SYSTEM_PYTHON:-/usr/bin/python3}
gdal_calc=$(command -v gdal_calc.py || echo /usr/bin/gdal_calc.py)
work=$(dirname "$out")
export GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR

gdal_translate -q -of VRT -b "$red" -b "$nir" "$src" "$work/red_nir.vrt"
# shellcheck disable=SC2046  # the four bounds are meant to split
gdalwarp -q -overwrite -t_srs "$crs" -te $(echo "$bounds" | tr , ' ') -tr "$res" "$res" \
    -r bilinear -multi -wo NUM_THREADS=ALL_CPUS -wm 512 \
    -co TILED=YES -co BLOCKXSIZE=512 -co BLOCKYSIZE=512 \
    "$work/red_nir.vrt" "$work/red_nir_utm.tif"
"$python" "$gdal_calc" --quiet \
    -A "$work/red_nir_utm.tif" --A_band 2 -B "$work/red_nir_utm.tif" --B_band 1 \
    --outfile "$out" \
    --calc "where((A == 0) | (B == 0), nan, (A / 10000.0 - B / 10000.0) / (A / 10000.0 + B / 10000.0))" \
    --type Float32 --format GTiff --NoDataValue nan --hideNoData \
    --co TILED=YES --co BLOCKXSIZE=512 --co BLOCKYSIZE=512 \
    --co COMPRESS=DEFLATE --co PREDICTOR=3 --co ZLEVEL=1
rm -f "$work/red_nir.vrt" "$work/red_nir_utm.tif"
