#!/usr/bin/env bash
# Composes the off-screen-voice evaluation clips from ../shared/media/talking: two real
# talking faces side by side (their lips move) with the voice of a third person who is
# not in view. No face in these clips ever speaks; labels.json beside them says so.
#
# Faces (360×360 tiles): A = person_a_speaking (face crop), B = person_b_speaking (face
# crop), C = one_face_speaking, D = the right face of two_faces_dev. Voices: S1, S2 =
# speech_other_1/2.wav; "voice of X" = that clip's own audio while X is not shown.
# These clips are for evaluation only: nothing in them enters any training set.
#
#   bash scripts/compose-offscreen.sh [OUT_DIR]     # default target/offscreen
set -euo pipefail
cd "$(dirname "$0")/.."
T=${SHARED:-../shared}/media/talking
OUT=${1:-target/offscreen}
mkdir -p "$OUT"
LEN=5
face() { # name → input args and a filter producing a 360×360 25 fps tile from [i:v]
  case "$1" in
    A) echo "$T/person_a_speaking.mp4|crop=720:720:200:440,scale=360:360" ;;
    B) echo "$T/person_b_speaking.mp4|crop=720:720:160:60,scale=360:360" ;;
    C) echo "$T/one_face_speaking.mp4|scale=360:360" ;;
    D) echo "$T/two_faces_dev.mp4|crop=360:360:360:0" ;;
  esac
}
voice() {
  case "$1" in
    S1) echo "$T/speech_other_1.wav" ;;
    S2) echo "$T/speech_other_2.wav" ;;
    A) echo "$T/person_a_speaking.mp4" ;;
    B) echo "$T/person_b_speaking.mp4" ;;
    C) echo "$T/one_face_speaking.mp4" ;;
  esac
}
# name  left  left-start  right  right-start  voice  voice-start
CLIPS="
ab_s1 A 0 B 0 S1 0
ab_s2 A 4 B 6 S2 0
ca_s2 C 0 A 2 S2 2
db_s1 D 0 B 10 S1 5
cd_s1 C 1 D 0 S1 10
ad_vb A 5 D 0 B 5
bc_va B 14 C 0 A 3
da_s2 D 0 A 0 S2 3
"
echo '{"about": "Off-screen voice clips made by scripts/compose-offscreen.sh: two real talking faces, a third person'"'"'s voice; no visible face speaks.", "clips": {' > "$OUT/labels.json"
first=1
while read -r name l ls r rs v vs; do
  [ -n "$name" ] || continue
  IFS='|' read -r lf lflt <<< "$(face "$l")"
  IFS='|' read -r rf rflt <<< "$(face "$r")"
  ffmpeg -nostdin -v error -y -ss "$ls" -t "$LEN" -i "$lf" -ss "$rs" -t "$LEN" -i "$rf" -ss "$vs" -t "$LEN" -i "$(voice "$v")" \
    -filter_complex "[0:v]fps=25,$lflt,setsar=1[l];[1:v]fps=25,$rflt,setsar=1[r];[l][r]hstack,format=yuv420p[v];[2:a]aresample=16000,pan=mono|c0=c0[a]" \
    -map "[v]" -map "[a]" -t "$LEN" -c:v libx264 -preset veryfast -crf 20 -c:a aac -b:a 96k "$OUT/$name.mp4"
  [ $first = 1 ] || echo ',' >> "$OUT/labels.json"
  first=0
  printf '"%s.mp4": {"faces": [{"position": "left", "speaking": [], "note": "face %s"}, {"position": "right", "speaking": [], "note": "face %s, voice %s"}]}' \
    "$name" "$l" "$r" "$v" >> "$OUT/labels.json"
done <<< "$CLIPS"
echo '}}' >> "$OUT/labels.json"
python3 -m json.tool "$OUT/labels.json" > /dev/null
ls "$OUT"
