/* History's hot path (_history.c), compiled into the _speedups module. */
#ifndef ALGOTRADE_HISTORY_H
#define ALGOTRADE_HISTORY_H

#include <Python.h>

PyObject *scan_klines(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *sma_crossover(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *curve(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *curve_figures(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
