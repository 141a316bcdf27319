"""Wave physics: acquisition constants, source wavelet and the exact finite-difference simulator."""
