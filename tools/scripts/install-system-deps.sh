#!/usr/bin/env bash
# Installs the Debian packages Switchyard's tests and benchmarks use. Idempotent; needs root
# (or sudo). Packages:
#   python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc
#       the independent Python client of test/polyglot
#   aria2              aria2c, the multi-source download anchor of `npm run bench -- content`
#   poppler-utils      pdftoppm, the reference renderer of the print fidelity tests and bench
#   fonts-urw-base35   metric-compatible base-14 fonts (Nimbus Sans for Helvetica, ...) so
#                      pdftoppm renders non-embedded standard fonts as pdf.js does
#   poppler-data       CMaps (UniJIS-UCS2-H, ...) poppler needs for non-embedded CJK fonts
#   fonts-noto-cjk     system CJK fonts: poppler substitutes them for non-embedded CJK
#                      CIDFonts, and the render children point pdf.js's fallback at them
#   fonts-ipafont-gothic  IPAGothic, the TrueType CJK font the embedded-CJK test PDF subsets
#   cups-ipp-utils     ippeveprinter (+ ippevepcl/ippeveps) and ipptool: the real IPP printer
#                      the printer role's forwarding is tested against
#   dbus-daemon        ippeveprinter needs a D-Bus system bus to start (its Avahi client);
#                      the tests run a private one (no avahi-daemon needed)
#   openssl            makes the CA and certificates of the TLS/mTLS tests
# Real-world PDFs of the print fidelity tests (test/print/real-pdfs.ts; ~100 MB with deps):
#   libtasn1-doc       libtasn1.pdf: texinfo/pdfTeX, embedded Type 1 (Computer Modern)
#   shared-mime-info   shared-mime-info-spec.pdf: LaTeX/pdfTeX, embedded Type 1 (Nimbus), tables
#   cups-filters       /usr/share/cups/data: the CUPS test page (cairo, TrueType, ~2100
#                      paths) and two LibreOffice 4 forms (TrueType, transparency group)
#   ghostscript-doc    GS9_Color_Management.pdf: CMYK and ICC JPEGs, raw CMYK images
#   ghostscript        ps2pdf (groff PostScript of gs(1) → CFF fonts) and the tiffg4/jpeg
#                      devices that make the "scans"; also ships gs(1)
#   groff-base         groff -Tps for that PostScript
#   img2pdf            wraps the scans as CCITT G4 / JPEG images, as scanner software does
#   librsvg2-bin       rsvg-convert: cairo PDFs with shadings and soft masks ...
#   tango-icon-theme   ... from these Inkscape SVG icons (gradients, opacity)
set -euo pipefail
packages=(python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc aria2 poppler-utils fonts-urw-base35 poppler-data fonts-noto-cjk fonts-ipafont-gothic cups-ipp-utils dbus-daemon openssl
  libtasn1-doc shared-mime-info cups-filters ghostscript-doc ghostscript groff-base img2pdf librsvg2-bin tango-icon-theme)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
