/* http.c — placeholder */
